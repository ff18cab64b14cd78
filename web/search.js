// Message search: the box in the top bar, and its results in place of the
// thread list, grouped by thread. Picking a result hands its message to
// `onPick`, which opens the thread at it (app.js: jumpToMessage).
//
// A result's `highlight` is the body HTML-escaped with <mark> around each
// match. It is never assigned as HTML: it is split on the two mark tags,
// and every other piece is unescaped and inserted as text, so a server
// bug could at worst show stray characters, never run anything.

const ENTITIES = { '&lt;': '<', '&gt;': '>', '&amp;': '&', '&quot;': '"', '&#39;': "'" };

function unescapeHtml(text) {
  return text.replace(/&(?:lt|gt|amp|quot|#39);/g, (entity) => ENTITIES[entity]);
}

// The highlight as DOM nodes: text, and <mark> elements holding text.
export function highlightNodes(highlight) {
  const nodes = [];
  let marked = false;
  for (const piece of highlight.split(/(<mark>|<\/mark>)/)) {
    if (piece === '<mark>') marked = true;
    else if (piece === '</mark>') marked = false;
    else if (piece) {
      const text = document.createTextNode(unescapeHtml(piece));
      if (marked) {
        const mark = document.createElement('mark');
        mark.append(text);
        nodes.push(mark);
      } else {
        nodes.push(text);
      }
    }
  }
  return nodes;
}

const PAGE = 20;

export function searchPanel({ api, el, threadName, nameOf, formatTime, onPick, onError }) {
  const $ = (id) => document.getElementById(id);
  const panel = $('search-results');
  const groups = $('search-groups');
  const input = $('search-input');
  // The query on screen, its `next` cursor, and its groups by thread id.
  let current = null;

  function close() {
    current = null;
    panel.hidden = true;
    $('thread-list').hidden = false;
    groups.replaceChildren();
  }

  async function run(q, before) {
    const asked = current;
    const page = await api.search(q, { limit: PAGE, before });
    if (current !== asked) return; // a newer search replaced this one
    for (const result of page.results) add(result);
    current.next = page.next;
    $('search-more').hidden = !page.next;
    const n = groups.querySelectorAll('[data-testid="search-result"]').length;
    $('search-summary').textContent = n === 0 ? 'No messages found' : `${n}${page.next ? '+' : ''} found`;
  }

  function add({ message, highlight }) {
    let group = current.groups.get(message.thread_id);
    if (!group) {
      const section = el('section', { class: 'search-group', 'data-testid': 'search-group', 'data-thread-id': message.thread_id });
      section.append(el('h3', {}, threadName(message.thread_id)));
      group = el('ul', {});
      section.append(group);
      groups.append(section);
      current.groups.set(message.thread_id, group);
    }
    const button = el('button', { type: 'button' });
    const meta = el('span', { class: 'meta' });
    meta.append(
      el('span', { class: 'sender' }, nameOf(message.sender_id)),
      el('time', { datetime: message.created_at }, formatTime(message.created_at)),
    );
    const text = el('span', { class: 'search-highlight', 'data-testid': 'search-highlight' });
    text.append(...highlightNodes(highlight));
    button.append(meta, text);
    button.addEventListener('click', () => onPick(message));
    const item = el('li', {
      class: 'search-result', 'data-testid': 'search-result',
      'data-message-id': message.id, 'data-seq': String(message.seq),
    });
    item.append(button);
    group.append(item);
  }

  $('search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const q = input.value.trim();
    if (!q) {
      close();
      return;
    }
    current = { q, next: null, groups: new Map() };
    groups.replaceChildren();
    $('search-summary').textContent = 'Searching…';
    $('search-more').hidden = true;
    $('thread-list').hidden = true;
    panel.hidden = false;
    run(q).catch(onError);
  });
  $('search-more').addEventListener('click', () => {
    if (current?.next) run(current.q, current.next).catch(onError);
  });
  $('search-close').addEventListener('click', () => {
    input.value = '';
    close();
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      input.value = '';
      close();
    }
  });

  return { close };
}
