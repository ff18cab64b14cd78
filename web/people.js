// The company directory as a search box over a list: used by the people
// panel and by the "add people" dialog, which differ only in what each row
// offers (so the page passes `row`). Searching waits for a pause in the
// typing, and an answer to an older search never overwrites a newer one.

const SEARCH_PAUSE_MS = 250;

export class Directory {
  // api: userApi's users(q, limit, after). row(user) -> <li>. onUsers(users)
  // sees each page as it comes (the page keeps presence from it).
  constructor({ api, input, list, more, status, pageSize, row, onUsers = () => {} }) {
    Object.assign(this, { api, input, list, more, status, pageSize, row, onUsers });
    this.users = [];
    this.next = null;
    this.query = '';
    this.generation = 0;
    this.loading = false;
    this.timer = null;
    // What the page last did from a row ("Dave was added."): it stays in
    // the status through redraws until the next search.
    this.note = null;
    input.addEventListener('input', () => {
      clearTimeout(this.timer);
      // What is listed is for the old words: no "more" of them.
      more.hidden = true;
      this.timer = setTimeout(() => this.search().catch((err) => this.failed(err)), SEARCH_PAUSE_MS);
    });
    // Enter searches at once rather than submitting anything.
    input.addEventListener('keydown', (e) => {
      if (e.key !== 'Enter' || e.isComposing) return;
      e.preventDefault();
      clearTimeout(this.timer);
      this.search().catch((err) => this.failed(err));
    });
    more.addEventListener('click', () => this.loadMore().catch((err) => this.failed(err)));
  }

  // A new search for what the box says now, from the first page.
  async search() {
    clearTimeout(this.timer);
    const generation = ++this.generation;
    const query = this.input.value.trim();
    this.loading = true;
    this.note = null;
    this.status.textContent = 'Searching…';
    try {
      const page = await this.api.users(query, this.pageSize, null);
      if (generation !== this.generation) return;
      this.query = query;
      this.users = page.users;
      this.next = page.next;
      this.onUsers(page.users);
      this.render();
    } finally {
      if (generation === this.generation) this.loading = false;
    }
  }

  async loadMore() {
    if (!this.next || this.loading) return;
    const generation = this.generation;
    this.loading = true;
    this.more.disabled = true;
    try {
      const page = await this.api.users(this.query, this.pageSize, this.next);
      if (generation !== this.generation) return;
      const firstNew = this.users.length;
      this.users = this.users.concat(page.users);
      this.next = page.next;
      this.onUsers(page.users);
      this.render();
      // The button may be gone: the keyboard goes on from the first new row.
      this.list.children[firstNew]?.querySelector('button, input')?.focus();
    } finally {
      this.more.disabled = false;
      if (generation === this.generation) this.loading = false;
    }
  }

  // Redraws the rows from what is held (presence or membership changed).
  render() {
    const focused = document.activeElement;
    const focusKey = this.list.contains(focused) ? focused.dataset.testid : null;
    const focusRow = this.list.contains(focused) ? focused.closest('[data-user-id]')?.dataset.userId : null;
    this.list.replaceChildren(...this.users.map((user) => this.row(user)));
    // Which words these rows answer (a test waits on it, a stylesheet could too).
    this.list.dataset.query = this.query;
    this.more.hidden = !this.next;
    const shown = this.users.length;
    if (this.note) {
      this.status.textContent = this.note;
    } else if (shown === 0) {
      this.status.textContent = this.query ? `No one matches “${this.query}”.` : 'No one here yet.';
    } else {
      const people = shown === 1 ? '1 person' : `${shown} people`;
      this.status.textContent = this.next ? `${people} shown, more below.` : `${people}.`;
    }
    // A redraw under the keyboard keeps its place.
    if (focusRow && focusKey) {
      this.list.querySelector(`[data-user-id="${focusRow}"] [data-testid="${focusKey}"]`)?.focus();
    }
  }

  // Says what was done from a row, over the count, until the next search.
  say(note) {
    this.note = note;
    this.status.textContent = note;
  }

  failed(err) {
    this.loading = false;
    this.status.textContent = `The directory could not be searched: ${err.message}`;
  }
}
