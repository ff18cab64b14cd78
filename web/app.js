// confab's browser client. State lives in plain maps; the DOM is updated
// per message element (never rebuilt wholesale) so scroll position and the
// read-tracking observer survive live traffic. Message text only ever goes
// through textContent.

import { userApi, ApiError } from './api.js';
import { Connection } from './connection.js';
import { isInlineImage, uploadElement, uploadFile, wireAttachments } from './files.js';
import { Directory } from './people.js';
import { searchPanel } from './search.js';
import {
  disablePush, enablePush, notificationsSupported, notifyWhileHidden, onOpenRequest, pushEnabled,
  showUnreadInTitle, threadFromLink,
} from './notify.js';
import { messageExtras } from './messages-extras.js';

const PAGE_SIZE = 50;
// People per directory page: a screenful, then "Show more people".
const DIRECTORY_PAGE = 25;
const TOKEN_KEY = 'confab.token';
// The server ends typing after 5 s without news; renewing every 3 s keeps
// it on while keys are being pressed, and 2 s of quiet ends it.
const TYPING_RENEW_MS = 3000;
const TYPING_IDLE_MS = 2000;
// If a typing:false never arrives (the typer's socket died), the indicator
// still goes away.
const TYPING_SHOWN_MAX_MS = 7000;

const $ = (id) => document.getElementById(id);
// One pane at a time below this width (the same number as in style.css).
const narrow = matchMedia('(max-width: 700px)');

const state = {
  api: null,
  token: null, // for downloads and uploads (web/files.js)
  conn: null,
  me: null,
  threads: new Map(), // id -> thread view (+ last_message)
  stores: new Map(), // id -> {bySeq: Map, oldestSeq, newestSeq, hasOlder, loadingOlder}
  members: new Map(), // thread id -> Map user id -> member
  // thread id -> count of membership changes heard; a member list fetched
  // across a change may predate it and is fetched again.
  memberChanges: new Map(),
  names: new Map(), // user id -> display name
  online: new Set(),
  typing: new Map(), // thread id -> Map user id -> timeout
  openThreadId: null,
  visibleSeqs: new Set(),
  pendingSends: new Map(), // client_msg_id -> {thread_id, body}
  picked: new Map(), // user id -> display name, chosen for a new group
};

const typingOut = { threadId: null, lastStart: 0, idleTimer: null };

// ---- login --------------------------------------------------------------

function takeToken() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const fromLink = hash.get('token');
  if (fromLink) {
    sessionStorage.setItem(TOKEN_KEY, fromLink);
    // The token must not linger in the address bar, history or a copied link.
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function showLogin(message = '') {
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
}

$('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const token = $('token-input').value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  start(token);
});

$('logout').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  state.conn?.stop();
  location.reload();
});

async function start(token) {
  state.api = userApi(token);
  state.token = token;
  try {
    state.me = await state.api.me();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin('That token was refused (expired or unknown). Paste a new one.');
    } else {
      showLogin(`Cannot reach confab: ${err.message}`);
    }
    return;
  }
  state.names.set(state.me.id, state.me.display_name);
  $('login').hidden = true;
  $('app').hidden = false;
  $('me').textContent = state.me.display_name;
  startSearch();

  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const conn = new Connection(`${scheme}://${location.host}/ws?token=${encodeURIComponent(token)}`);
  state.conn = conn;
  // For the end-to-end test and for debugging: drop the socket as a
  // network failure would.
  window.confabDebug = { drop: () => conn.drop() };
  // Online only once caught up: until then the lists may be behind.
  conn.addEventListener('status', (e) => showStatus(e.detail.state === 'online' ? { state: 'syncing' } : e.detail));
  conn.addEventListener('closed', (e) => onClosed(e.detail));
  conn.addEventListener('ready', (e) => onReady(e.detail).catch(reportError));
  for (const [event, handler] of Object.entries(handlers)) {
    conn.addEventListener(event, (e) => handler(e.detail));
  }
  conn.start();
  setUpPushToggle();
  onOpenRequest((threadId) => openThread(threadId).catch(reportError));
}

// ---- notifications setting -----------------------------------------------

function setUpPushToggle() {
  const toggle = $('push-toggle');
  if (!notificationsSupported()) return;
  const show = () => {
    const on = pushEnabled();
    toggle.textContent = on ? 'Notifications: on' : 'Notifications: off';
    toggle.setAttribute('aria-pressed', String(on));
  };
  toggle.hidden = false;
  show();
  toggle.addEventListener('click', async () => {
    toggle.disabled = true;
    try {
      if (pushEnabled()) await disablePush(state.api);
      else await enablePush(state.api);
    } catch (err) {
      reportError(err);
    } finally {
      toggle.disabled = false;
      show();
    }
  });
}

let countdown = null;

function showStatus({ state: connState, delay }) {
  const status = $('conn-status');
  status.dataset.state = connState;
  clearInterval(countdown);
  if (connState === 'reconnecting') {
    const at = Date.now() + (delay ?? 0);
    const tick = () => {
      status.textContent = `Reconnecting in ${Math.max(0, Math.ceil((at - Date.now()) / 1000))} s…`;
    };
    tick();
    countdown = setInterval(tick, 1000);
    return;
  }
  status.textContent = {
    connecting: 'Connecting…', syncing: 'Catching up…', online: 'Online', closed: 'Disconnected',
  }[connState];
}

// Closes after which reconnecting with the same token is pointless.
const SIGNED_OUT = {
  4001: 'You were signed out: your sign-in was revoked. Open a new login link or paste a new token.',
  4003: 'This account has been deactivated. Ask your administrator if that is a mistake.',
};

async function onClosed({ code, wasReady }) {
  if (SIGNED_OUT[code]) {
    state.conn.stop();
    sessionStorage.removeItem(TOKEN_KEY);
    closeDialogs();
    showLogin(SIGNED_OUT[code]);
    return;
  }
  // Offline, we cannot know who is online; chat:ready's member reload
  // tells again.
  state.online.clear();
  renderMembers();
  renderDirectories();
  if (wasReady) return;
  // A refused upgrade looks like any failed socket; the API says whether
  // the token is the reason.
  try {
    await state.api.me();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      state.conn.stop();
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin('Your session has expired. Open a new login link or paste a token.');
    }
  }
}

function reportError(err) {
  console.error(err);
}

// ---- (re)connected: catch up ------------------------------------------

let readyCount = 0;

async function onReady(ready) {
  const generation = ++readyCount;
  try {
    await catchUp(ready);
  } finally {
    // A newer connection, or none, has its own status by now.
    if (generation === readyCount && state.conn.ready) showStatus({ state: 'online' });
  }
}

async function catchUp({ threads }) {
  const listed = await state.api.threads();
  const byId = new Map(listed.threads.map((t) => [t.id, t]));
  const live = new Set();
  for (const view of threads) {
    live.add(view.id);
    const known = byId.get(view.id);
    upsertThread({ ...view, last_message: known?.last_message ?? state.threads.get(view.id)?.last_message ?? null });
  }
  for (const id of [...state.threads.keys()]) {
    if (!live.has(id)) forgetThread(id);
  }
  renderThreadList();
  // An untitled thread is named after its members, who come from the API.
  for (const thread of state.threads.values()) {
    if (!thread.title && !state.members.has(thread.id)) loadMembers(thread.id).catch(reportError);
  }
  // Online status may have changed while we were away.
  if (state.openThreadId) loadMembers(state.openThreadId).catch(reportError);
  for (const view of threads) {
    // Delivered means this device holds the messages: a thread that was
    // never opened here was only counted (last_seq), not downloaded, so its
    // senders must not see it delivered.
    const store = state.stores.get(view.id);
    if (!store) {
      extras.noteRev(view.id, view.last_rev);
      continue;
    }
    if (view.last_seq > store.newestSeq) await syncThread(view.id, store.newestSeq);
    // Edits, deletions and reactions to messages held here, made meanwhile.
    await extras.catchUpChanges(view.id, view.last_rev ?? 0);
    markDelivered(view.id, store.newestSeq);
  }
  const linked = threadFromLink();
  if (linked && state.threads.has(linked) && !state.openThreadId) {
    await openThread(linked);
  } else if (threads.length > 0) {
    autoOpen(threads[0].id);
  }
  maybeMarkRead();
}

// Fetches every message after `afterSeq`, page by page, so a reconnect
// misses nothing.
async function syncThread(threadId, afterSeq) {
  let after = afterSeq;
  for (;;) {
    const { messages, has_more } = await state.conn.request('chat:sync', {
      thread_id: threadId,
      after_seq: after,
      limit: 200,
    });
    for (const message of messages) storeMessage(message);
    if (messages.length > 0) after = messages[messages.length - 1].seq;
    if (!has_more || messages.length === 0) break;
  }
}

// ---- server events -------------------------------------------------------

const handlers = {
  'chat:message': ({ message }) => {
    extras.noteRev(message.thread_id, message.rev);
    storeMessage(message);
    const thread = state.threads.get(message.thread_id);
    if (!thread) return;
    if (message.sender_id !== state.me.id && message.seq > thread.last_read_seq && !message.deleted_at) {
      thread.unread += 1;
    }
    extras.onNewMessage(message, thread);
    renderThreadList();
    noteArrival(message.thread_id, message.seq);
    stopShowingTyping(message.thread_id, message.sender_id);
    announceArrival(message, thread);
    if (message.sender_id !== state.me.id && !message.deleted_at) {
      notifyWhileHidden({
        title: threadName(thread),
        body: `${nameOf(message.sender_id)}: ${message.body ?? message.metadata?.name ?? ''}`,
        threadId: message.thread_id,
        onClick: () => openThread(message.thread_id).catch(reportError),
      }).catch(reportError);
    }
  },
  'chat:message-edited': ({ message }) => {
    extras.noteRev(message.thread_id, message.rev);
    storeMessage(message);
  },
  'chat:reaction': (reaction) => extras.onReaction(reaction),
  'chat:message-deleted': ({ thread_id, message_id, seq, deleted_at, rev }) => {
    extras.noteRev(thread_id, rev);
    const store = state.stores.get(thread_id);
    const thread = state.threads.get(thread_id);
    // A thread never opened here holds no messages, only its last one.
    const old = store?.bySeq.get(seq) ?? (thread?.last_message?.id === message_id ? thread.last_message : undefined);
    if (thread && seq > thread.last_read_seq && !old?.deleted_at) {
      if (!old) refreshUnread().catch(reportError); // whose it was is unknown here
      else if (old.sender_id !== state.me.id) thread.unread = Math.max(0, thread.unread - 1);
    }
    const tombstone = {
      ...(old ?? {}), id: message_id, thread_id, seq, body: null, metadata: null, deleted_at, rev, mentions: [], reactions: [],
    };
    if (store?.bySeq.has(seq)) storeMessage(tombstone);
    if (thread) extras.recountMentions(thread, store);
    if (thread?.last_message?.id === message_id) thread.last_message = tombstone;
    renderThreadList();
  },
  'chat:delivered': ({ thread_id, user_id, up_to_seq }) => {
    moveCursor(thread_id, user_id, 'last_delivered_seq', up_to_seq);
  },
  'chat:read': ({ thread_id, user_id, up_to_seq }) => {
    if (user_id === state.me.id) {
      // Read in another of my sessions.
      const thread = state.threads.get(thread_id);
      if (thread && up_to_seq > thread.last_read_seq) {
        thread.last_read_seq = up_to_seq;
        // Reading delivers too (the server moved both cursors).
        thread.last_delivered_seq = Math.max(thread.last_delivered_seq ?? 0, up_to_seq);
        if (!recountUnread(thread_id)) refreshUnread().catch(reportError);
        renderThreadList();
      }
      return;
    }
    moveCursor(thread_id, user_id, 'last_read_seq', up_to_seq);
    moveCursor(thread_id, user_id, 'last_delivered_seq', up_to_seq);
  },
  'chat:typing': ({ thread_id, user_id, typing }) => {
    if (typing) showTyping(thread_id, user_id);
    else stopShowingTyping(thread_id, user_id);
  },
  'chat:presence': ({ user_id, online }) => {
    if (online) state.online.add(user_id);
    else state.online.delete(user_id);
    renderMembers();
    renderThreadList();
    renderDirectories();
  },
  'chat:thread-joined': ({ thread }) => {
    upsertThread({ ...thread, last_message: state.threads.get(thread.id)?.last_message ?? null });
    renderThreadList();
    // Named after its members, as an opened one is.
    if (!thread.title) loadMembers(thread.id).catch(reportError);
    autoOpen(thread.id);
    // The thread may already hold messages this session never saw.
    const store = state.stores.get(thread.id);
    if (!store) extras.noteRev(thread.id, thread.last_rev);
    if (store && thread.last_seq > store.newestSeq) syncThread(thread.id, store.newestSeq).catch(reportError);
  },
  'chat:thread-left': ({ thread_id }) => {
    const thread = state.threads.get(thread_id);
    // Unknown here: this tab left it itself and has already said so.
    if (!thread) return;
    const name = threadName(thread);
    const wasOpen = thread_id === state.openThreadId;
    forgetThread(thread_id);
    renderThreadList();
    // Removed by its creator or the operator, or left on another device.
    const text = `You are no longer a member of “${name}”.`;
    if (wasOpen) showNotice(text);
    else announce(text);
  },
  'chat:thread-updated': ({ thread }) => {
    const before = state.threads.get(thread.id);
    if (!before) return;
    mergeThread(thread);
    recountUnread(thread.id); // where it cannot, the server's count stands
    if (!thread.title) loadMembers(thread.id).catch(reportError); // named after its members now
    renderThreadList();
    if (thread.id === state.openThreadId) {
      renderThreadHeader();
      if (before.title !== thread.title) {
        notice(thread.id, thread.title ? `Renamed to “${thread.title}”` : 'The name was removed');
      }
    }
  },
  'chat:user-updated': ({ user }) => {
    renamePerson(user.id, user.display_name);
  },
  'chat:member-joined': ({ thread_id, user_id }) => {
    noteMemberChange(thread_id);
    if (thread_id === state.openThreadId) {
      loadMembers(thread_id).then(() => notice(thread_id, `${nameOf(user_id)} joined`), reportError);
    } else if (state.threads.get(thread_id) && !state.threads.get(thread_id).title) {
      // Its name is its members'.
      loadMembers(thread_id).catch(reportError);
    } else {
      state.members.delete(thread_id);
    }
  },
  'chat:member-left': ({ thread_id, user_id }) => {
    noteMemberChange(thread_id);
    const name = nameOf(user_id);
    state.members.get(thread_id)?.delete(user_id);
    stopShowingTyping(thread_id, user_id);
    if (thread_id === state.openThreadId) {
      renderMembers();
      notice(thread_id, `${name} left`);
    }
    renderThreadList();
  },
  'chat:error': ({ code, message }) => {
    console.warn(`confab: ${code}: ${message}`);
  },
};

// ---- threads -------------------------------------------------------------

function upsertThread(view) {
  const current = state.threads.get(view.id);
  if (current) {
    // Cursors never move back, whatever order the news comes in.
    view.last_seq = Math.max(view.last_seq, current.last_seq);
    view.last_read_seq = Math.max(view.last_read_seq, current.last_read_seq);
    view.last_delivered_seq = Math.max(view.last_delivered_seq ?? 0, current.last_delivered_seq ?? 0);
  }
  state.threads.set(view.id, view);
}

// A thread view from an answer or an event, onto what is held: cursors
// never move back, and the last message stays.
function mergeThread(view) {
  upsertThread({ ...view, last_message: state.threads.get(view.id)?.last_message ?? null });
}

function forgetThread(id) {
  state.threads.delete(id);
  state.stores.delete(id);
  state.members.delete(id);
  state.typing.delete(id);
  if (state.openThreadId === id) closeThread();
}

function threadName(thread) {
  if (thread.title) return thread.title;
  const members = state.members.get(thread.id);
  if (members) {
    const others = [...members.values()].filter((m) => m.user_id !== state.me.id);
    if (others.length > 0) {
      return others.map((m) => (m.deactivated_at ? `${m.display_name} (deactivated)` : m.display_name)).join(', ');
    }
  }
  return thread.kind === 'direct' ? 'Direct message' : 'Untitled group';
}

function lastActivity(thread) {
  return thread.last_message?.created_at ?? thread.created_at;
}

function renderThreadList() {
  const list = $('thread-list');
  const threads = [...state.threads.values()].sort((a, b) =>
    lastActivity(b).localeCompare(lastActivity(a)) || a.id.localeCompare(b.id));
  list.replaceChildren(...threads.map((thread) => {
    const item = el('li', { class: 'thread-item', 'data-testid': 'thread-item', 'data-thread-id': thread.id });
    const button = el('button', { type: 'button' });
    if (thread.id === state.openThreadId) {
      item.classList.add('open');
      button.setAttribute('aria-current', 'true');
    }
    button.addEventListener('click', () => openThread(thread.id).catch(reportError));
    const title = el('span', { class: 'thread-name', 'data-testid': 'thread-name' }, threadName(thread));
    const badge = el('span', { class: 'unread', 'data-testid': 'unread' }, String(thread.unread));
    // The badge is a bare number on screen; a screen reader says what it counts.
    const badgeMeaning = el('span', { class: 'visually-hidden' }, thread.unread === 1 ? 'unread message' : 'unread messages');
    badge.hidden = badgeMeaning.hidden = thread.unread === 0;
    const preview = el('span', { class: 'preview', 'data-testid': 'last-message' }, previewOf(thread.last_message));
    button.append(title, badge, badgeMeaning, extras.mentionMarker(thread), preview);
    item.append(button);
    return item;
  }));
  showUnreadInTitle(state.threads.values());
}

function previewOf(message) {
  if (!message) return 'No messages yet';
  const who = message.sender_id === state.me.id ? 'You' : nameOf(message.sender_id);
  if (message.deleted_at) return `${who}: message deleted`;
  return `${who}: ${message.body ?? message.metadata?.name ?? ''}`;
}

// Opens a thread the person did not pick (at start, when added to one):
// only where the list and the thread are side by side, so a narrow screen
// stays on the list it shows.
function autoOpen(threadId) {
  if (!state.openThreadId && !narrow.matches) openThread(threadId, { show: false }).catch(reportError);
}

async function openThread(threadId, { show = true } = {}) {
  if (!state.threads.has(threadId)) return;
  stopTyping();
  state.openThreadId = threadId;
  state.visibleSeqs.clear();
  extras.threadChanged();
  if (show) showThreadPane();
  $('no-thread').hidden = true;
  $('thread-header').hidden = false;
  $('messages').hidden = false;
  $('composer').hidden = false;
  $('message-list').replaceChildren();
  $('member-list').replaceChildren();
  renderThreadList();
  renderTyping();
  renderThreadHeader();
  await loadMembers(threadId);
  if (state.openThreadId !== threadId) return;
  let store = state.stores.get(threadId);
  if (!store) {
    const page = await state.api.newestMessages(threadId, PAGE_SIZE);
    if (state.openThreadId !== threadId) return;
    store = newStore(threadId, page);
    state.stores.set(threadId, store);
    for (const message of page.messages) store.bySeq.set(message.seq, message);
    // Messages may have arrived between the page and now.
    if (state.threads.get(threadId).last_seq > store.newestSeq && state.conn.ready) {
      await syncThread(threadId, store.newestSeq);
    }
  }
  for (const message of [...store.bySeq.values()].sort((a, b) => a.seq - b.seq)) renderMessage(message);
  for (const pending of state.pendingSends.values()) {
    if (pending.thread_id === threadId) renderPending(pending);
  }
  scrollToBottom();
  markDelivered(threadId, store.newestSeq);
  historyObserver.observe($('history-sentinel'));
  maybeMarkRead();
  // On a narrow screen the list that had the focus is gone; the keyboard a
  // focused composer would open on a phone would hide the thread.
  if (narrow.matches) $('thread-title').focus();
  else $('composer-input').focus();
}

// The open thread's name and what may be done with it.
function renderThreadHeader() {
  const thread = state.threads.get(state.openThreadId);
  if (!thread) return;
  $('thread-title').textContent = threadName(thread);
  // A direct thread has exactly two members and no title: the server
  // refuses to rename it, add to it or leave it.
  const group = thread.kind === 'group';
  $('rename').hidden = !group;
  $('add-people').hidden = !group;
  $('leave').hidden = !group;
}

function closeThread() {
  stopTyping();
  state.openThreadId = null;
  state.visibleSeqs.clear();
  extras.threadChanged();
  if ($('app').dataset.view === 'thread') $('app').dataset.view = 'list';
  // They act on the thread that was open.
  for (const dialog of [$('rename-dialog'), $('add-dialog')]) if (dialog.open) dialog.close();
  $('no-thread').hidden = false;
  $('thread-header').hidden = true;
  $('messages').hidden = true;
  $('composer').hidden = true;
  $('typing').textContent = '';
}

// ---- one pane at a time on a narrow screen ------------------------------

function showThreadPane() {
  setView('thread');
}

// 'list', 'thread' or 'people'. Side by side, the list is always there and
// the view says what the other pane shows; on a narrow screen it is the
// one pane shown.
function setView(view) {
  const app = $('app');
  const from = app.dataset.view;
  if (from === view) return;
  app.dataset.view = view;
  if (!narrow.matches) return;
  // The browser's own back (a phone's back gesture) returns to the list
  // too: one history entry for being away from it, however many panes.
  if (from === 'list') history.pushState({ confabView: view }, '');
  else if (view !== 'list') history.replaceState({ confabView: view }, '');
}

function backToList() {
  if ($('app').dataset.view === 'people') {
    // Side by side, the thread that was open is still there behind it.
    if (state.openThreadId && !narrow.matches) setView('thread');
    else setView('list');
    $('open-people').focus();
    return;
  }
  const threadId = state.openThreadId;
  closeThread();
  renderThreadList();
  threadListButton(threadId)?.focus();
}

function threadListButton(threadId) {
  return threadId ? $('thread-list').querySelector(`[data-thread-id="${threadId}"] button`) : null;
}

function goBack() {
  if (history.state?.confabView && narrow.matches) history.back(); // popstate does the rest
  else backToList();
}

$('back').addEventListener('click', goBack);
$('people-back').addEventListener('click', goBack);

window.addEventListener('popstate', () => {
  if ($('app').dataset.view !== 'list') backToList();
});

// ---- leaving -------------------------------------------------------------

$('leave').addEventListener('click', async () => {
  const threadId = state.openThreadId;
  const thread = state.threads.get(threadId);
  if (!thread) return;
  const name = threadName(thread);
  const leave = await confirmInPage(
    `Leave “${name}”? You will no longer see its messages unless someone adds you again.`, 'Leave');
  if (!leave) return;
  try {
    await state.api.leave(threadId);
  } catch (err) {
    showNotice(`Could not leave “${name}”: ${err.message}`);
    return;
  }
  // chat:thread-left says the same; the page need not wait for it.
  forgetThread(threadId);
  renderThreadList();
  announce(`You left ${name}`);
  $('thread-list').querySelector('button')?.focus();
});

// ---- people: the directory, new conversations, members -----------------

const directoryApi = { users: (q, limit, after) => state.api.users(q, limit, after) };

// The directory says who is online as of its answer, which is as fresh as
// anything this page knows.
function notePresence(users) {
  for (const user of users) {
    if (user.id === state.me.id) continue;
    if (user.online) state.online.add(user.id);
    else state.online.delete(user.id);
  }
  renderMembers();
}

function personRow(user, extra) {
  const me = user.id === state.me.id;
  const online = me || state.online.has(user.id);
  const item = el('li', {
    class: 'person', 'data-testid': 'person', 'data-user-id': user.id, 'data-online': String(online),
  });
  item.append(
    presenceMark(online),
    el('span', { class: 'person-name', 'data-testid': 'person-name' }, me ? `${user.display_name} (you)` : user.display_name),
  );
  if (!me) item.append(...extra());
  return item;
}

const peopleDirectory = new Directory({
  api: directoryApi,
  input: $('people-search'),
  list: $('people-list'),
  more: $('people-more'),
  status: $('people-status'),
  pageSize: DIRECTORY_PAGE,
  onUsers: notePresence,
  row: (user) => personRow(user, () => {
    const pick = el('label', { class: 'pick' });
    const box = el('input', { type: 'checkbox', 'data-testid': 'person-pick' });
    box.checked = state.picked.has(user.id);
    box.addEventListener('change', () => {
      if (box.checked) state.picked.set(user.id, user.display_name);
      else state.picked.delete(user.id);
      renderPicked();
    });
    pick.append(box, el('span', { 'aria-hidden': 'true' }, 'Pick'),
      el('span', { class: 'visually-hidden' }, `Pick ${user.display_name} for a new group`));
    const message = el('button', {
      type: 'button', class: 'small', 'data-testid': 'person-message', 'aria-label': `Message ${user.display_name}`,
    }, 'Message');
    message.addEventListener('click', () => startDirect(user, message));
    return [pick, message];
  }),
});

const addDirectory = new Directory({
  api: directoryApi,
  input: $('add-search'),
  list: $('add-list'),
  more: $('add-more'),
  status: $('add-status'),
  pageSize: DIRECTORY_PAGE,
  onUsers: notePresence,
  row: (user) => personRow(user, () => {
    const threadId = state.openThreadId;
    if (state.members.get(threadId)?.has(user.id)) {
      return [el('span', { class: 'already', 'data-testid': 'already-member' }, 'in the group')];
    }
    const add = el('button', {
      type: 'button', class: 'small', 'data-testid': 'person-add', 'aria-label': `Add ${user.display_name} to the group`,
    }, 'Add');
    add.addEventListener('click', () => addMember(threadId, user, add));
    return [add];
  }),
});

function renderDirectories() {
  if ($('app').dataset.view === 'people') peopleDirectory.render();
  if ($('add-dialog').open) addDirectory.render();
}

$('open-people').addEventListener('click', () => {
  setView('people');
  $('people-search').focus();
  // Fresh each time: people come and go, and so does their presence.
  peopleDirectory.search().catch((err) => peopleDirectory.failed(err));
});

async function startDirect(user, button) {
  button.disabled = true;
  try {
    // An existing conversation with this person comes back (200) instead
    // of a second one.
    const view = await state.api.createThread({ kind: 'direct', member_ids: [user.id] });
    state.names.set(user.id, user.display_name);
    mergeThread(view);
    renderThreadList();
    await openThread(view.id);
  } catch (err) {
    showNotice(`Could not start a conversation with ${user.display_name}: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

function renderPicked() {
  const names = [...state.picked.values()];
  $('group-picked').textContent = names.length === 0
    ? 'Pick people above to start a group with them.'
    : `Picked: ${names.join(', ')}`;
  $('group-create').disabled = names.length === 0;
  $('group-create').textContent = names.length === 0 ? 'Start group' : `Start group with ${names.length}`;
  $('group-clear').hidden = names.length === 0;
}

$('group-clear').addEventListener('click', () => {
  state.picked.clear();
  renderPicked();
  peopleDirectory.render();
  $('people-search').focus();
});

$('group-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  if (state.picked.size === 0) return;
  const title = $('group-title').value.trim();
  $('group-create').disabled = true;
  try {
    const view = await state.api.createThread({
      kind: 'group', member_ids: [...state.picked.keys()], ...(title ? { title } : {}),
    });
    state.picked.clear();
    $('group-title').value = '';
    renderPicked();
    peopleDirectory.render();
    mergeThread(view);
    renderThreadList();
    await openThread(view.id);
  } catch (err) {
    showNotice(`Could not start the group: ${err.message}`);
  } finally {
    renderPicked();
  }
});

// ---- managing a group: rename, add, remove -------------------------------

$('rename').addEventListener('click', () => {
  const thread = state.threads.get(state.openThreadId);
  if (!thread) return;
  $('rename-input').value = thread.title ?? '';
  $('rename-error').textContent = '';
  openDialog($('rename-dialog'), $('rename-input'));
  $('rename-input').select();
});

$('rename-cancel').addEventListener('click', () => $('rename-dialog').close());

$('rename-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const threadId = state.openThreadId;
  if (!threadId) return;
  // Empty clears the name (null); the server would refuse "".
  const title = $('rename-input').value.trim() || null;
  $('rename-save').disabled = true;
  try {
    mergeThread(await state.api.renameThread(threadId, title));
    if (!title) await loadMembers(threadId);
    renderThreadList();
    renderThreadHeader();
    $('rename-dialog').close();
  } catch (err) {
    $('rename-error').textContent = `Could not rename: ${err.message}`;
  } finally {
    $('rename-save').disabled = false;
  }
});

$('add-people').addEventListener('click', () => {
  if (!state.openThreadId) return;
  $('add-heading').textContent = `Add people to “${threadName(state.threads.get(state.openThreadId))}”`;
  $('add-search').value = '';
  addDirectory.users = [];
  addDirectory.render();
  openDialog($('add-dialog'), $('add-search'));
  addDirectory.search().catch((err) => addDirectory.failed(err));
});

$('add-done').addEventListener('click', () => $('add-dialog').close());

async function addMember(threadId, user, button) {
  button.disabled = true;
  try {
    await state.api.addMember(threadId, user.id);
    state.names.set(user.id, user.display_name);
    // chat:member-joined follows; the dialog shows the change at once.
    await loadMembers(threadId);
    // chat:member-joined redraws the list meanwhile: the note survives it.
    addDirectory.say(`${user.display_name} was added.`);
    $('add-search').focus();
  } catch (err) {
    button.disabled = false;
    addDirectory.say(`Could not add ${user.display_name}: ${err.message}`);
  }
}

async function removeMember(threadId, userId) {
  const name = nameOf(userId);
  const thread = state.threads.get(threadId);
  if (!thread) return;
  if (!await confirmInPage(`Remove ${name} from “${threadName(thread)}”?`, 'Remove')) return;
  try {
    await state.api.removeMember(threadId, userId);
    // chat:member-left updates the list and says so.
  } catch (err) {
    showNotice(`Could not remove ${name}: ${err.message}`);
  }
}

// Modal, so the keyboard stays in it; Escape closes it and the focus goes
// back where it was.
function openDialog(dialog, focus) {
  if (dialog.open) return;
  const opener = document.activeElement;
  dialog.showModal();
  focus.focus();
  dialog.addEventListener('close', () => {
    if (opener?.isConnected && !opener.closest('[hidden]')) opener.focus();
  }, { once: true });
}

function closeDialogs() {
  for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close();
}

function newStore(threadId, page) {
  const seqs = page.messages.map((m) => m.seq);
  const thread = state.threads.get(threadId);
  return {
    bySeq: new Map(),
    oldestSeq: seqs.length ? Math.min(...seqs) : (thread?.last_seq ?? 0) + 1,
    newestSeq: seqs.length ? Math.max(...seqs) : 0,
    hasOlder: page.has_more,
    loadingOlder: false,
  };
}

function noteMemberChange(threadId) {
  state.memberChanges.set(threadId, (state.memberChanges.get(threadId) ?? 0) + 1);
}

async function loadMembers(threadId) {
  const changesBefore = state.memberChanges.get(threadId) ?? 0;
  const { members } = await state.api.members(threadId);
  // A change announced while the request was out may not be in its answer:
  // ask again rather than show a member who has left.
  if ((state.memberChanges.get(threadId) ?? 0) !== changesBefore) return loadMembers(threadId);
  if (!state.threads.has(threadId)) return; // left meanwhile
  const map = new Map();
  for (const member of members) {
    map.set(member.user_id, member);
    state.names.set(member.user_id, member.display_name);
    if (member.online) state.online.add(member.user_id);
    else state.online.delete(member.user_id);
  }
  state.members.set(threadId, map);
  if (threadId === state.openThreadId) {
    renderThreadHeader();
    renderMembers();
    refreshReceipts(threadId);
  }
  renderThreadList();
  if (threadId === state.openThreadId && $('add-dialog').open) addDirectory.render();
}

function renderMembers() {
  const threadId = state.openThreadId;
  const members = state.members.get(threadId);
  if (!members) return;
  const thread = state.threads.get(threadId);
  // The server lets only a group's creator remove others.
  const mayRemove = thread?.kind === 'group' && thread.created_by === state.me.id;
  $('member-list').replaceChildren(...[...members.values()].map((m) => {
    const me = m.user_id === state.me.id;
    const deactivated = Boolean(m.deactivated_at);
    const online = me || (!deactivated && state.online.has(m.user_id));
    const item = el('li', {
      class: `member${deactivated ? ' deactivated' : ''}`,
      'data-testid': 'member',
      'data-user-id': m.user_id,
      'data-online': String(online),
      'data-deactivated': String(deactivated),
    });
    let label = m.display_name;
    if (me) label += ' (you)';
    if (deactivated) label += ' (deactivated)';
    item.append(presenceMark(online), el('span', { class: 'member-name', 'data-testid': 'member-name' }, label));
    if (mayRemove && !me) {
      const remove = el('button', {
        type: 'button', class: 'remove', 'data-testid': 'remove-member', 'aria-label': `Remove ${m.display_name} from the group`,
        title: `Remove ${m.display_name}`, 'aria-haspopup': 'dialog',
      }, '×');
      remove.addEventListener('click', () => removeMember(threadId, m.user_id));
      item.append(remove);
    }
    return item;
  }));
}

// A filled or a hollow circle, named for screen readers, so presence is
// not told by colour alone.
function presenceMark(online) {
  const presence = online ? 'online' : 'offline';
  return el('span', { class: `presence ${presence}`, role: 'img', 'aria-label': presence, title: presence, 'data-testid': 'presence' },
    online ? '●' : '○');
}

// chat:user-updated: the new name wherever the old one shows.
function renamePerson(userId, displayName) {
  state.names.set(userId, displayName);
  for (const members of state.members.values()) {
    const member = members.get(userId);
    if (member) member.display_name = displayName;
  }
  if (userId === state.me.id) {
    state.me.display_name = displayName;
    $('me').textContent = displayName;
  }
  for (const directory of [peopleDirectory, addDirectory]) {
    for (const user of directory.users) if (user.id === userId) user.display_name = displayName;
  }
  if (state.picked.has(userId)) state.picked.set(userId, displayName);
  renderThreadList();
  renderThreadHeader();
  renderMembers();
  renderTyping();
  renderDirectories();
  renderPicked();
  for (const sender of $('message-list').querySelectorAll(`[data-sender-id="${userId}"] .sender`)) {
    if (userId !== state.me.id) sender.textContent = displayName;
  }
}

function nameOf(userId) {
  if (!userId) return 'Someone';
  return state.names.get(userId) ?? `user ${userId.slice(-6)}`;
}

// ---- messages ------------------------------------------------------------

function storeMessage(message) {
  const thread = state.threads.get(message.thread_id);
  if (thread) {
    if (message.seq > thread.last_seq) thread.last_seq = message.seq;
    if (!thread.last_message || message.seq >= thread.last_message.seq) thread.last_message = message;
  }
  const store = state.stores.get(message.thread_id);
  if (!store) return;
  // An older state of a message (a live event a chat:changes page
  // overtook) does not undo a newer one.
  if (!extras.isNewer(store.bySeq.get(message.seq), message)) return;
  store.bySeq.set(message.seq, message);
  store.newestSeq = Math.max(store.newestSeq, message.seq);
  if (message.thread_id === state.openThreadId) {
    const stick = isAtBottom();
    renderMessage(message);
    if (stick) scrollToBottom();
  }
}

function messageElement(message) {
  return $('message-list').querySelector(`[data-seq="${message.seq}"]`);
}

function renderMessage(message) {
  const mine = message.sender_id === state.me.id;
  const item = el('li', {
    class: `message${mine ? ' mine' : ''}${message.deleted_at ? ' deleted' : ''}${message.type === 'system' ? ' system' : ''}`,
    'data-testid': 'message',
    'data-seq': String(message.seq),
    'data-message-id': message.id,
    'data-client-msg-id': message.client_msg_id ?? '',
    'data-sender-id': message.sender_id ?? '',
  });
  const meta = el('div', { class: 'meta' });
  meta.append(
    el('span', { class: 'sender' }, mine ? 'You' : nameOf(message.sender_id)),
    el('time', { datetime: message.created_at, title: fullTime(message.created_at) }, formatTime(message.created_at)),
  );
  if (message.edited_at && !message.deleted_at) meta.append(el('span', { class: 'edited', 'data-testid': 'edited' }, 'edited'));
  const body = el('div', { class: 'body', 'data-testid': 'message-body' });
  if (message.deleted_at) {
    body.textContent = 'message deleted';
  } else {
    if (message.metadata) body.append(attachment(message.metadata), ' ');
    body.append(message.body ?? '');
  }
  item.append(meta, body);
  if (mine && !message.deleted_at) {
    const receipt = el('span', { class: 'receipt', 'data-testid': 'receipt' });
    meta.append(receipt);
    const actions = el('div', { class: 'actions' });
    const edit = el('button', { type: 'button', 'data-testid': 'edit' }, 'Edit');
    edit.addEventListener('click', () => startEdit(item, message));
    const remove = el('button', { type: 'button', 'data-testid': 'delete' }, 'Delete');
    remove.addEventListener('click', () => deleteMessage(message));
    actions.append(edit, remove);
    item.append(actions);
  }
  const old = messageElement(message);
  if (old) {
    readObserver.unobserve(old);
    old.replaceWith(item);
  } else {
    const pending = message.client_msg_id &&
      $('message-list').querySelector(`[data-pending="true"][data-client-msg-id="${message.client_msg_id}"]`);
    if (pending) pending.remove();
    const after = [...$('message-list').children].find((child) =>
      child.dataset.pending === 'true' || Number(child.dataset.seq) > message.seq);
    $('message-list').insertBefore(item, after ?? null);
  }
  extras.decorate(item, message);
  if (mine) updateReceipt(item, message);
  else if (!message.deleted_at) readObserver.observe(item);
}

function attachment(metadata) {
  // An upload of this server's: fetched with the token (web/files.js).
  if (metadata.upload_id) return uploadElement(state.token, metadata, $('image-viewer'));
  const safe = /^https?:\/\//i.test(metadata.url);
  const link = el('a', { class: 'attachment', rel: 'noopener noreferrer', target: '_blank' }, `📎 ${metadata.name}`);
  if (safe) link.href = metadata.url;
  return link;
}

function renderPending({ client_msg_id, body, failed }) {
  const item = el('li', {
    class: `message mine pending${failed ? ' failed' : ''}`,
    'data-testid': 'message',
    'data-pending': 'true',
    'data-client-msg-id': client_msg_id,
  });
  const meta = el('div', { class: 'meta' });
  meta.append(
    el('span', { class: 'sender' }, 'You'),
    el('span', { class: 'receipt', 'data-testid': 'receipt', 'data-status': failed ? 'failed' : 'pending' },
      failed ? `not sent: ${failed}` : 'sending…'),
  );
  item.append(meta, el('div', { class: 'body', 'data-testid': 'message-body' }, body));
  const old = $('message-list').querySelector(`[data-pending="true"][data-client-msg-id="${client_msg_id}"]`);
  if (old) old.replaceWith(item);
  else $('message-list').append(item);
}

// Delivered when some other member's device has it, read when some other
// member has seen it; the tooltip names who.
function updateReceipt(item, message) {
  const receipt = item.querySelector('[data-testid="receipt"]');
  if (!receipt) return;
  const others = [...(state.members.get(message.thread_id)?.values() ?? [])]
    .filter((m) => m.user_id !== state.me.id);
  const readBy = others.filter((m) => m.last_read_seq >= message.seq);
  const deliveredTo = others.filter((m) => m.last_delivered_seq >= message.seq);
  let status = 'sent';
  let mark = '✓';
  let title = 'sent';
  if (readBy.length > 0) {
    status = 'read';
    mark = '✓✓';
    title = `read by ${readBy.map((m) => m.display_name).join(', ')}`;
  } else if (deliveredTo.length > 0) {
    status = 'delivered';
    mark = '✓✓';
    title = `delivered to ${deliveredTo.map((m) => m.display_name).join(', ')}`;
  }
  if (receipt.dataset.status === status && receipt.title === title) return;
  receipt.dataset.status = status;
  receipt.title = title;
  // Said in words as well as ticks and colour: delivered and read differ
  // only in colour otherwise.
  receipt.replaceChildren(el('span', { class: 'ticks', 'aria-hidden': 'true' }, mark), ` ${status}`);
}

function refreshReceipts(threadId) {
  if (threadId !== state.openThreadId) return;
  const store = state.stores.get(threadId);
  if (!store) return;
  for (const item of $('message-list').querySelectorAll('.message.mine:not([data-pending])')) {
    const message = store.bySeq.get(Number(item.dataset.seq));
    if (message) updateReceipt(item, message);
  }
}

function moveCursor(threadId, userId, field, upToSeq) {
  const member = state.members.get(threadId)?.get(userId);
  if (!member || member[field] >= upToSeq) return;
  member[field] = upToSeq;
  refreshReceipts(threadId);
}

function notice(threadId, text) {
  if (threadId !== state.openThreadId) return;
  const stick = isAtBottom();
  // After the newest message, before pending sends.
  const firstPending = $('message-list').querySelector('[data-pending="true"]');
  $('message-list').insertBefore(el('li', { class: 'notice', 'data-testid': 'notice' }, text), firstPending);
  if (stick) scrollToBottom();
}

// The time alone today, the day as well before that (and the year when it
// is not this one); the full date is in the title.
function formatTime(iso, now = new Date()) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const time = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (sameDay(date, now)) return time;
  const yesterday = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1);
  if (sameDay(date, yesterday)) return `Yesterday ${time}`;
  const day = { day: 'numeric', month: 'short' };
  if (date.getFullYear() !== now.getFullYear()) day.year = 'numeric';
  return `${date.toLocaleDateString([], day)} ${time}`;
}

function fullTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleString([], { dateStyle: 'full', timeStyle: 'short' });
}

function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

// ---- history paging ------------------------------------------------------

const historyObserver = new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting)) loadOlder().catch(reportError);
}, { root: $('messages') });

async function loadOlder() {
  const threadId = state.openThreadId;
  const store = state.stores.get(threadId);
  if (!store || !store.hasOlder || store.loadingOlder) return;
  store.loadingOlder = true;
  let done;
  // A jump to an older message waits for this page rather than give up.
  store.olderLoaded = new Promise((resolve) => { done = resolve; });
  try {
    const page = await state.api.messagesBefore(threadId, store.oldestSeq, PAGE_SIZE);
    if (state.openThreadId !== threadId) return;
    const box = $('messages');
    const fromBottom = box.scrollHeight - box.scrollTop;
    for (const message of page.messages) {
      store.bySeq.set(message.seq, message);
      store.oldestSeq = Math.min(store.oldestSeq, message.seq);
      renderMessage(message);
    }
    store.hasOlder = page.has_more;
    // Keep the message the reader was looking at where it was.
    box.scrollTop = box.scrollHeight - fromBottom;
  } finally {
    store.loadingOlder = false;
    done();
  }
  // Still at the top (a tall window): keep going.
  const sentinel = $('history-sentinel').getBoundingClientRect();
  const box = $('messages').getBoundingClientRect();
  if (store.hasOlder && sentinel.bottom >= box.top) loadOlder().catch(reportError);
}

function isAtBottom() {
  const box = $('messages');
  return box.scrollHeight - box.scrollTop - box.clientHeight < 40;
}

function scrollToBottom() {
  const box = $('messages');
  box.scrollTop = box.scrollHeight;
}

// ---- receipts we send ----------------------------------------------------

const delivered = new Map(); // thread id -> highest seq we reported

function deliveredUpTo(threadId) {
  return Math.max(delivered.get(threadId) ?? 0, state.threads.get(threadId)?.last_delivered_seq ?? 0);
}

function markDelivered(threadId, seq) {
  // Offline, the report would be lost yet counted as made.
  if (!state.conn.ready || !state.threads.has(threadId) || seq <= deliveredUpTo(threadId)) return;
  delivered.set(threadId, seq);
  state.conn.notify('chat:delivered', { thread_id: threadId, up_to_seq: seq });
}

// A cursor covers every seq below it, so a live message is reported only
// when this client holds everything between the last report and it. After
// a reconnect, a thread never opened here has messages that were only
// counted; they are reported when the thread is opened (and read).
function noteArrival(threadId, seq) {
  const store = state.stores.get(threadId);
  for (let missing = deliveredUpTo(threadId) + 1; missing < seq; missing += 1) {
    if (!store?.bySeq.has(missing)) return;
  }
  markDelivered(threadId, seq);
}

// Read means seen: the message is on screen, in a visible tab, in the
// window that has focus.
const readObserver = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const seq = Number(entry.target.dataset.seq);
    if (entry.isIntersecting) state.visibleSeqs.add(seq);
    else state.visibleSeqs.delete(seq);
  }
  maybeMarkRead();
}, { root: $('messages'), threshold: 0.5 });

document.addEventListener('visibilitychange', () => maybeMarkRead());
window.addEventListener('focus', () => maybeMarkRead());

function maybeMarkRead() {
  const threadId = state.openThreadId;
  const thread = state.threads.get(threadId);
  if (!thread || !state.conn?.ready) return;
  if (document.visibilityState !== 'visible' || !document.hasFocus()) return;
  if (state.visibleSeqs.size === 0) return;
  const upTo = Math.max(...state.visibleSeqs);
  if (upTo <= thread.last_read_seq) return;
  thread.last_read_seq = upTo;
  recountUnread(threadId);
  renderThreadList();
  state.conn.request('chat:mark-read', { thread_id: threadId, up_to_seq: upTo }).catch(reportError);
}

// Whether the count could be worked out here.
function recountUnread(threadId) {
  const thread = state.threads.get(threadId);
  const store = state.stores.get(threadId);
  if (!thread) return true;
  extras.recountMentions(thread, store);
  if (thread.last_read_seq >= thread.last_seq) {
    thread.unread = 0;
    return true;
  }
  // Exact only when we hold every message after the read cursor.
  if (store && store.oldestSeq <= thread.last_read_seq + 1) {
    thread.unread = [...store.bySeq.values()].filter((m) =>
      m.seq > thread.last_read_seq && m.sender_id !== state.me.id && !m.deleted_at).length;
    return true;
  }
  return false;
}

// Counts this client cannot work out (it does not hold the messages) come
// from the server. Calls while one is out are folded into one more.
const unreadRefresh = { running: false, again: false };

async function refreshUnread() {
  if (unreadRefresh.running) {
    unreadRefresh.again = true;
    return;
  }
  unreadRefresh.running = true;
  try {
    do {
      unreadRefresh.again = false;
      const { threads } = await state.api.threads();
      for (const listed of threads) {
        const thread = state.threads.get(listed.id);
        // An answer older than news already here would undo it.
        if (!thread || listed.last_seq !== thread.last_seq || listed.last_read_seq < thread.last_read_seq) continue;
        thread.last_read_seq = listed.last_read_seq;
        thread.unread = listed.unread;
        thread.unread_mentions = listed.unread_mentions;
      }
      renderThreadList();
    } while (unreadRefresh.again);
  } finally {
    unreadRefresh.running = false;
  }
}

// ---- typing --------------------------------------------------------------

function showTyping(threadId, userId) {
  if (!state.typing.has(threadId)) state.typing.set(threadId, new Map());
  const typers = state.typing.get(threadId);
  clearTimeout(typers.get(userId));
  typers.set(userId, setTimeout(() => stopShowingTyping(threadId, userId), TYPING_SHOWN_MAX_MS));
  renderTyping();
}

function stopShowingTyping(threadId, userId) {
  const typers = state.typing.get(threadId);
  if (!typers?.has(userId)) return;
  clearTimeout(typers.get(userId));
  typers.delete(userId);
  renderTyping();
}

function renderTyping() {
  const typers = [...(state.typing.get(state.openThreadId)?.keys() ?? [])].map(nameOf);
  const box = $('typing');
  box.textContent = typers.length === 0 ? ''
    : typers.length === 1 ? `${typers[0]} is typing…`
      : `${typers.join(', ')} are typing…`;
  box.dataset.active = String(typers.length > 0);
}

function typed() {
  const threadId = state.openThreadId;
  if (!threadId) return;
  if ($('composer-input').value.trim() === '') {
    stopTyping();
    return;
  }
  const now = Date.now();
  if (typingOut.threadId !== threadId || now - typingOut.lastStart > TYPING_RENEW_MS) {
    typingOut.threadId = threadId;
    typingOut.lastStart = now;
    state.conn.notify('chat:typing-start', { thread_id: threadId });
  }
  clearTimeout(typingOut.idleTimer);
  typingOut.idleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
}

function stopTyping() {
  clearTimeout(typingOut.idleTimer);
  if (typingOut.threadId) state.conn?.notify('chat:typing-stop', { thread_id: typingOut.threadId });
  typingOut.threadId = null;
  typingOut.lastStart = 0;
}

// ---- composing, editing, deleting ---------------------------------------

$('composer-input').addEventListener('input', typed);
$('composer-input').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $('composer').requestSubmit();
  }
});

$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $('composer-input');
  const body = input.value;
  const threadId = state.openThreadId;
  if (!threadId || body.trim() === '') return;
  input.value = '';
  // The server ends our typing indicator when the message lands.
  clearTimeout(typingOut.idleTimer);
  typingOut.threadId = null;
  send(threadId, body, extras.takeComposed(threadId, body));
});

// crypto.randomUUID exists only in secure contexts (https, localhost); a
// server opened over plain http on a LAN address still needs v4 UUIDs.
function newClientMsgId() {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// `extra`: reply_to and mentions (messages-extras.js).
function send(threadId, body, extra = {}) {
  const pending = { client_msg_id: newClientMsgId(), thread_id: threadId, body };
  state.pendingSends.set(pending.client_msg_id, pending);
  if (threadId === state.openThreadId) {
    renderPending(pending);
    scrollToBottom();
  }
  state.conn.send({ thread_id: threadId, client_msg_id: pending.client_msg_id, type: 'text', body, ...extra }).then(
    (message) => {
      state.pendingSends.delete(pending.client_msg_id);
      storeMessage(message);
      renderThreadList();
    },
    (err) => {
      pending.failed = err.code ?? err.message;
      if (threadId === state.openThreadId) renderPending(pending);
    },
  );
}

// ---- files: attach, paste, drop --------------------------------------------
// Each file is uploaded (with a progress bar), then sent as its own
// message: an image when it is one the page shows inline, else a file.

wireAttachments({
  button: $('attach'),
  input: $('file-input'),
  dropTarget: $('thread-pane'),
  pasteTarget: $('composer-input'),
  onFiles: (files) => {
    const threadId = state.openThreadId;
    if (threadId) sendFiles(threadId, files).catch(reportError);
  },
});

$('image-viewer-close').addEventListener('click', () => $('image-viewer').close());

async function sendFiles(threadId, files) {
  for (const file of files) {
    $('upload-name').textContent = file.name || 'pasted file';
    $('upload-bar').value = 0;
    $('upload-progress').hidden = false;
    let upload;
    try {
      upload = await uploadFile(state.token, file, (done) => { $('upload-bar').value = done; });
    } catch (err) {
      showNotice(err.status === 413
        ? `${file.name} is too large to send.`
        : `${file.name} could not be uploaded: ${err.message}`);
      continue;
    } finally {
      $('upload-progress').hidden = true;
    }
    const type = isInlineImage(upload.mime) ? 'image' : 'file';
    const message = await state.conn.send({
      thread_id: threadId, client_msg_id: newClientMsgId(), type, metadata: { upload_id: upload.id },
    }).catch((err) => {
      showNotice(`${file.name} was uploaded but not sent: ${err.code ?? err.message}`);
      return null;
    });
    if (message) {
      storeMessage(message);
      renderThreadList();
      if (threadId === state.openThreadId) scrollToBottom();
    }
  }
}

// A textarea, so a message of several lines keeps them: Enter saves,
// Shift+Enter starts a new line and Escape gives up, as in the composer.
function startEdit(item, message) {
  const body = item.querySelector('.body');
  if (!body) return; // already being edited
  const form = el('form', { class: 'edit-form' });
  const input = el('textarea', { 'data-testid': 'edit-input', maxlength: '8000', 'aria-label': 'Edit message' });
  input.value = message.body ?? '';
  const fit = () => { input.rows = Math.min(10, input.value.split('\n').length + 1); };
  fit();
  const save = el('button', { type: 'submit', 'data-testid': 'edit-save' }, 'Save');
  const cancel = el('button', { type: 'button', 'data-testid': 'edit-cancel' }, 'Cancel');
  form.append(input, save, cancel);
  body.replaceWith(form);
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
  const stopEditing = () => {
    renderMessage(state.stores.get(message.thread_id)?.bySeq.get(message.seq) ?? message);
    messageElement(message)?.querySelector('[data-testid="edit"]')?.focus();
  };
  cancel.addEventListener('click', stopEditing);
  input.addEventListener('input', fit);
  input.addEventListener('keydown', (e) => {
    if (e.isComposing) return;
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      form.requestSubmit();
    } else if (e.key === 'Escape') {
      e.preventDefault();
      stopEditing();
    }
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = input.value;
    if (text.trim() === '') return;
    try {
      storeMessage(await state.api.editMessage(message.id, text));
      messageElement(message)?.querySelector('[data-testid="edit"]')?.focus();
    } catch (err) {
      showNotice(`Edit failed: ${err.message}`);
    }
  });
}

async function deleteMessage(message) {
  if (!await confirmInPage('Delete this message for everyone?', 'Delete')) return;
  try {
    storeMessage(await state.api.deleteMessage(message.id));
    renderThreadList();
  } catch (err) {
    showNotice(`Delete failed: ${err.message}`);
  }
}

// ---- in-page notices, questions and announcements -----------------------

// Instead of alert(): the page keeps working while it shows.
function showNotice(text) {
  $('page-notice-text').textContent = text;
  $('page-notice').hidden = false;
}

$('page-notice-close').addEventListener('click', () => {
  $('page-notice').hidden = true;
});

// Instead of confirm(): resolves true when the person confirms, false on
// Cancel or Escape. Cancel has the focus, so a stray Enter destroys nothing.
function confirmInPage(question, confirmLabel) {
  const dialog = $('confirm-dialog');
  if (dialog.open) return Promise.resolve(false);
  const opener = document.activeElement;
  $('confirm-text').textContent = question;
  $('confirm-ok').textContent = confirmLabel;
  dialog.returnValue = '';
  dialog.showModal();
  $('confirm-cancel').focus();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      if (opener?.isConnected) opener.focus();
      resolve(dialog.returnValue === 'confirm');
    }, { once: true });
  });
}

$('confirm-ok').addEventListener('click', () => $('confirm-dialog').close('confirm'));
$('confirm-cancel').addEventListener('click', () => $('confirm-dialog').close(''));

// Read out by screen readers (an aria-live region), shown to no one.
function announce(text) {
  $('announcer').textContent = text;
}

function announceArrival(message, thread) {
  if (message.sender_id === state.me.id || message.deleted_at) return;
  const who = nameOf(message.sender_id);
  if (message.thread_id === state.openThreadId) {
    const text = message.body ?? message.metadata?.name ?? '';
    announce(`${who}: ${text.length > 300 ? `${text.slice(0, 300)}…` : text}`);
  } else {
    announce(`New message from ${who} in ${threadName(thread)}`);
  }
}

// ---- search: results open the thread at the message ----------------------

// Pages of history loaded, at most, to reach a found message: 20 × 500.
const JUMP_PAGE = 500;
const JUMP_MAX_PAGES = 20;

function startSearch() {
  searchPanel({
    api: state.api,
    el,
    threadName: (id) => (state.threads.has(id) ? threadName(state.threads.get(id)) : 'A thread'),
    nameOf: (id) => (id === state.me.id ? 'You' : nameOf(id)),
    formatTime,
    onPick: (message) => jumpToMessage(message.thread_id, message.seq).catch(reportError),
    onError: reportError,
  });
}

// Opens the thread and shows the message at `seq`. The open thread holds
// one unbroken run of history up to its newest message, so older pages are
// loaded back to a little above the message (as scrolling up would).
async function jumpToMessage(threadId, seq) {
  if (state.openThreadId !== threadId) await openThread(threadId);
  else showThreadPane();
  if (state.openThreadId !== threadId) return;
  const store = state.stores.get(threadId);
  if (!store) return;
  const wanted = Math.max(seq - 10, 1);
  // History paging started by scrolling (opening the thread shows its top
  // on a tall window) is finished first.
  while (store.loadingOlder && store.olderLoaded) await store.olderLoaded;
  if (state.openThreadId !== threadId) return;
  if (store.oldestSeq > wanted && store.hasOlder && !store.loadingOlder) {
    store.loadingOlder = true;
    try {
      for (let pages = 0; store.oldestSeq > wanted && store.hasOlder && pages < JUMP_MAX_PAGES; pages++) {
        const page = await state.api.messagesBefore(threadId, store.oldestSeq, JUMP_PAGE);
        if (state.openThreadId !== threadId) return;
        for (const message of page.messages) {
          store.bySeq.set(message.seq, message);
          store.oldestSeq = Math.min(store.oldestSeq, message.seq);
          renderMessage(message);
        }
        store.hasOlder = page.has_more;
      }
    } finally {
      store.loadingOlder = false;
    }
  }
  const item = $('message-list').querySelector(`[data-seq="${seq}"]`);
  if (!item) {
    showNotice('That message is too far back to open here.');
    return;
  }
  item.scrollIntoView({ block: 'center' });
  for (const old of $('message-list').querySelectorAll('[data-found="true"]')) {
    old.classList.remove('found');
    delete old.dataset.found;
  }
  item.classList.add('found');
  item.dataset.found = 'true';
  item.setAttribute('tabindex', '-1');
  item.focus({ preventScroll: true });
}

// ---- DOM helper ----------------------------------------------------------

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---- go ------------------------------------------------------------------

// Reactions, replies, mentions and the change feed (messages-extras.js).
const extras = messageExtras({
  state,
  el,
  nameOf,
  storeMessage,
  jumpToMessage,
  onThreadCounts: (threadId) => {
    if (!recountUnread(threadId)) refreshUnread().catch(reportError);
    renderThreadList();
  },
  showNotice,
  reportError,
});

renderPicked();
const token = takeToken();
if (token) start(token);
else showLogin();
