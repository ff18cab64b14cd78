// Richer messages: reactions, replies, mentions, and catching up on
// changes to old messages (`rev`, chat:changes) after a reconnect.
//
// app.js owns the state and the message list; this module adds to each
// message element what it draws here (quote, highlighted mentions,
// reactions, Reply/React actions), adds a reply bar and a mention
// autocomplete to the composer, and keeps per thread the highest rev this
// tab has applied. Text only ever goes in through textContent.

const COMMON_EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '😢'];
const QUOTE_CUT = 120;
const MENTIONS_MAX = 50;
const SUGGESTIONS_MAX = 8;
const CHANGES_PAGE = 200;

export function messageExtras({ state, el, nameOf, storeMessage, jumpToMessage, onThreadCounts, showNotice, reportError }) {
  const $ = (id) => document.getElementById(id);
  // thread id -> the highest rev applied here: every change up to it is in
  // what this tab holds (of the messages it holds).
  const revs = new Map();
  // What the composer is preparing: the message replied to, and the
  // people picked from the autocomplete (id and the name inserted).
  const composing = { threadId: null, replyTo: null, picked: new Map() };

  // ---- rev ---------------------------------------------------------------

  function noteRev(threadId, rev) {
    if (typeof rev === 'number' && rev > (revs.get(threadId) ?? 0)) revs.set(threadId, rev);
  }

  // Whether a message view may replace the one held: an older state (a
  // live event overtaken by a chat:changes page) must not undo a newer one.
  function isNewer(held, message) {
    return !held || typeof held.rev !== 'number' || typeof message.rev !== 'number' || message.rev >= held.rev;
  }

  // After chat:ready: a thread this tab has loaded and whose last_rev is
  // above what it applied is paged through chat:changes from there. Each
  // message comes in its current state; one this tab does not hold (older
  // than its loaded history) is left for history paging to bring.
  async function catchUpChanges(threadId, lastRev) {
    const store = state.stores.get(threadId);
    const held = revs.get(threadId) ?? 0;
    if (!store || lastRev <= held) {
      noteRev(threadId, lastRev);
      return;
    }
    let after = held;
    for (;;) {
      const page = await state.conn.request('chat:changes', { thread_id: threadId, after_rev: after, limit: CHANGES_PAGE });
      const current = state.stores.get(threadId);
      if (!current) return; // left meanwhile
      for (const message of page.messages) {
        if (current.bySeq.has(message.seq) || message.seq > current.newestSeq) storeMessage(message);
      }
      noteRev(threadId, page.last_rev);
      if (!page.has_more || page.last_rev <= after) break;
      after = page.last_rev;
    }
    onThreadCounts(threadId);
  }

  // ---- drawing a message -------------------------------------------------

  // The body's text with each `@Name` of a mentioned member marked; a
  // mention of me is marked more strongly.
  function bodyNodes(message) {
    const text = message.body ?? '';
    const named = (message.mentions ?? [])
      .map((id) => ({ id, name: id === state.me.id ? state.me.display_name : nameOf(id) }))
      .filter(({ name }) => name)
      .sort((a, b) => b.name.length - a.name.length);
    if (named.length === 0) return [text];
    const nodes = [];
    let rest = text;
    for (;;) {
      let best = null;
      for (const who of named) {
        const at = rest.indexOf(`@${who.name}`);
        if (at !== -1 && (!best || at < best.at)) best = { at, who };
      }
      if (!best) break;
      if (best.at > 0) nodes.push(rest.slice(0, best.at));
      const me = best.who.id === state.me.id;
      nodes.push(el('span', {
        class: `mention${me ? ' mention-me' : ''}`, 'data-testid': 'mention', 'data-user-id': best.who.id,
      }, `@${best.who.name}`));
      rest = rest.slice(best.at + best.who.name.length + 1);
    }
    if (rest) nodes.push(rest);
    return nodes;
  }

  function quote(message) {
    const target = message.reply_to;
    // The target as held here is the freshest (edits and deletion reach it).
    const held = state.stores.get(message.thread_id)?.bySeq.get(target.seq);
    const body = held ? (held.deleted_at ? null : held.body) : target.body;
    const gone = held ? Boolean(held.deleted_at) : target.body === null;
    const button = el('button', {
      type: 'button', class: 'quote', 'data-testid': 'reply-quote', 'data-reply-seq': String(target.seq),
    });
    const who = target.sender_id === state.me.id ? 'You' : nameOf(target.sender_id);
    let text = gone ? 'deleted message' : (body ?? 'attachment');
    if (text.length > QUOTE_CUT) text = `${text.slice(0, QUOTE_CUT)}…`;
    button.append(el('span', { class: 'quote-sender' }, who), ' ', el('span', { class: 'quote-body' }, text));
    button.setAttribute('aria-label', `Reply to ${who}: ${text}. Show that message`);
    button.addEventListener('click', () => jumpToMessage(message.thread_id, target.seq).catch(reportError));
    return button;
  }

  // Replies quoting this message show it as it is now (edited, deleted).
  function refreshQuotesOf(message) {
    for (const button of $('message-list').querySelectorAll(`.quote[data-reply-seq="${message.seq}"]`)) {
      const replySeq = Number(button.closest('[data-seq]')?.dataset.seq);
      const reply = state.stores.get(message.thread_id)?.bySeq.get(replySeq);
      if (reply?.reply_to?.id === message.id) button.replaceWith(quote(reply));
    }
  }

  function reactionRow(message) {
    const row = el('div', { class: 'reactions', 'data-testid': 'reactions' });
    for (const { emoji, user_ids: users } of message.reactions ?? []) {
      if (users.length === 0) continue;
      const mine = users.includes(state.me.id);
      const names = users.map((id) => (id === state.me.id ? 'You' : nameOf(id)));
      const chip = el('button', {
        type: 'button', class: 'reaction', 'data-testid': 'reaction', 'data-emoji': emoji,
        'aria-pressed': String(mine), title: `${emoji} ${names.join(', ')}`,
      });
      chip.append(el('span', { class: 'reaction-emoji' }, emoji), ' ', el('span', { class: 'reaction-count', 'data-testid': 'reaction-count' }, String(users.length)));
      chip.setAttribute('aria-label', `${emoji} ${users.length}: ${names.join(', ')}${mine ? ' (click to remove yours)' : ''}`);
      chip.addEventListener('click', () => react(message, emoji, !mine));
      row.append(chip);
    }
    return row;
  }

  function picker(message, reactButton) {
    const box = el('div', { class: 'reaction-picker', 'data-testid': 'reaction-picker', role: 'group', 'aria-label': 'Add a reaction' });
    const close = () => {
      box.remove();
      reactButton.setAttribute('aria-expanded', 'false');
      document.removeEventListener('pointerdown', outside, true);
    };
    for (const emoji of COMMON_EMOJI) {
      const pick = el('button', { type: 'button', 'data-testid': 'reaction-pick', 'data-emoji': emoji, 'aria-label': `React with ${emoji}` }, emoji);
      pick.addEventListener('click', () => {
        close();
        react(message, emoji, true);
      });
      box.append(pick);
    }
    const form = el('form', { class: 'reaction-free' });
    const input = el('input', {
      type: 'text', 'data-testid': 'reaction-input', 'aria-label': 'Any emoji', placeholder: 'other', maxlength: '32', size: '5',
    });
    form.append(input, el('button', { type: 'submit', 'data-testid': 'reaction-add' }, 'Add'));
    box.append(form);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const emoji = input.value.trim();
      if (!emoji) return;
      close();
      react(message, emoji, true);
    });
    box.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') {
        e.stopPropagation();
        close();
        reactButton.focus();
      }
    });
    // Gone on a press anywhere else; the React button toggles it itself.
    const outside = (e) => {
      if (!box.contains(e.target) && e.target !== reactButton) close();
    };
    document.addEventListener('pointerdown', outside, true);
    box.close = close;
    return box;
  }

  // Adds to a freshly drawn message element what this module shows.
  function decorate(item, message) {
    if (message.pending || message.type === 'system') return;
    refreshQuotesOf(message);
    const body = item.querySelector('.body');
    if (message.reply_to && body) body.before(quote(message));
    if (message.deleted_at) return;
    if (body && message.mentions?.length) {
      // Replace the plain text app.js put in last (after any attachment).
      const text = body.lastChild;
      if (text?.nodeType === Node.TEXT_NODE && text.data === message.body) text.replaceWith(...bodyNodes(message));
    }
    item.append(reactionRow(message));
    const actions = el('div', { class: 'extra-actions' });
    const reply = el('button', { type: 'button', 'data-testid': 'reply' }, 'Reply');
    reply.addEventListener('click', () => startReply(message));
    const reactButton = el('button', { type: 'button', 'data-testid': 'react', 'aria-expanded': 'false' }, 'React');
    reactButton.addEventListener('click', () => {
      const open = actions.querySelector('.reaction-picker');
      if (open) {
        open.close();
        return;
      }
      reactButton.setAttribute('aria-expanded', 'true');
      const box = picker(message, reactButton);
      actions.append(box);
      box.querySelector('button')?.focus();
    });
    actions.append(reply, reactButton);
    item.append(actions);
  }

  function redrawReactions(message) {
    if (message.thread_id !== state.openThreadId) return;
    const item = $('message-list').querySelector(`[data-seq="${message.seq}"]`);
    const row = item?.querySelector('.reactions');
    if (row) row.replaceWith(reactionRow(message));
  }

  // ---- reactions ---------------------------------------------------------

  // As a set operation: a user is added to the emoji's list (the emoji goes
  // to the end when new) or removed (the emoji leaves with its last user).
  function applyReaction(message, userId, emoji, on) {
    const reactions = (message.reactions ?? []).map((r) => ({ emoji: r.emoji, user_ids: [...r.user_ids] }));
    const entry = reactions.find((r) => r.emoji === emoji);
    if (on) {
      if (!entry) reactions.push({ emoji, user_ids: [userId] });
      else if (!entry.user_ids.includes(userId)) entry.user_ids.push(userId);
    } else if (entry) {
      entry.user_ids = entry.user_ids.filter((id) => id !== userId);
    }
    message.reactions = reactions.filter((r) => r.user_ids.length > 0);
  }

  function onReaction({ thread_id, seq, user_id, emoji, on, rev }) {
    noteRev(thread_id, rev);
    const message = state.stores.get(thread_id)?.bySeq.get(seq);
    // Already in what is held (a chat:changes page was newer).
    if (!message || (typeof message.rev === 'number' && rev <= message.rev)) return;
    applyReaction(message, user_id, emoji, on);
    message.rev = rev;
    redrawReactions(message);
  }

  async function react(message, emoji, on) {
    const held = state.stores.get(message.thread_id)?.bySeq.get(message.seq) ?? message;
    try {
      const ack = await state.conn.request('chat:react', { thread_id: message.thread_id, message_id: message.id, emoji, on });
      // Set operations commute, so applying mine at once is safe whatever
      // live changes to this message are still on their way (mine is not
      // broadcast to this session); its rev is left to them and to a
      // catch-up, so none of them is skipped as already applied.
      if (ack) applyReaction(held, state.me.id, emoji, on);
      redrawReactions(held);
    } catch (err) {
      showNotice(`Could not react: ${err.message}`);
    }
  }

  // ---- replies -----------------------------------------------------------

  const replyBar = el('div', { class: 'reply-bar', 'data-testid': 'reply-bar', hidden: '' });
  const replyText = el('span', { class: 'reply-text', 'data-testid': 'reply-bar-text' });
  const replyCancel = el('button', { type: 'button', class: 'small', 'data-testid': 'reply-cancel', 'aria-label': 'Cancel the reply' }, '×');
  replyBar.append(replyText, replyCancel);
  replyCancel.addEventListener('click', () => {
    cancelReply();
    $('composer-input').focus();
  });

  function startReply(message) {
    composing.threadId = message.thread_id;
    composing.replyTo = message;
    const who = message.sender_id === state.me.id ? 'yourself' : nameOf(message.sender_id);
    let text = message.body ?? '';
    if (text.length > QUOTE_CUT) text = `${text.slice(0, QUOTE_CUT)}…`;
    replyText.replaceChildren('Replying to ', el('strong', {}, who), `: ${text}`);
    replyBar.hidden = false;
    $('composer-input').focus();
  }

  function cancelReply() {
    composing.replyTo = null;
    replyBar.hidden = true;
  }

  // ---- mentions: the autocomplete -----------------------------------------

  const input = $('composer-input');
  const listbox = el('ul', { id: 'mention-list', class: 'mention-list', role: 'listbox', 'data-testid': 'mention-list', 'aria-label': 'People to mention', hidden: '' });
  const suggest = { query: null, start: 0, options: [], active: 0 };
  // The textarea stays a textbox (a multi-line combobox is not one a
  // screen reader handles well); aria-activedescendant names the option.
  input.setAttribute('aria-autocomplete', 'list');
  input.setAttribute('aria-controls', 'mention-list');

  // The `@word` just before the caret, if the caret is in one.
  function mentionQuery() {
    const upTo = input.value.slice(0, input.selectionStart);
    const match = /(^|\s)@([^\s@]{0,40})$/.exec(upTo);
    if (!match) return null;
    return { text: match[2], start: upTo.length - match[2].length - 1 };
  }

  function updateSuggestions() {
    const query = mentionQuery();
    const members = state.members.get(state.openThreadId);
    if (!query || !members) return closeSuggestions();
    const wanted = query.text.toLowerCase();
    const options = [...members.values()]
      .filter((m) => m.user_id !== state.me.id && !m.deactivated_at && m.display_name.toLowerCase().includes(wanted))
      .sort((a, b) => Number(!a.display_name.toLowerCase().startsWith(wanted)) - Number(!b.display_name.toLowerCase().startsWith(wanted)))
      .slice(0, SUGGESTIONS_MAX);
    if (options.length === 0) return closeSuggestions();
    suggest.query = query;
    suggest.options = options;
    suggest.active = Math.min(suggest.active, options.length - 1);
    renderSuggestions();
  }

  function renderSuggestions() {
    listbox.replaceChildren(...suggest.options.map((m, i) => {
      const option = el('li', {
        id: `mention-option-${i}`, role: 'option', class: 'mention-option', 'data-testid': 'mention-option',
        'data-user-id': m.user_id, 'aria-selected': String(i === suggest.active),
      }, m.display_name);
      // mousedown, so the textarea keeps the focus and the caret.
      option.addEventListener('mousedown', (e) => {
        e.preventDefault();
        choose(i);
      });
      return option;
    }));
    listbox.hidden = false;
    input.setAttribute('aria-activedescendant', `mention-option-${suggest.active}`);
  }

  function closeSuggestions() {
    suggest.query = null;
    suggest.options = [];
    suggest.active = 0;
    listbox.hidden = true;
    listbox.replaceChildren();
    input.removeAttribute('aria-activedescendant');
  }

  function choose(index) {
    const member = suggest.options[index];
    const { start } = suggest.query;
    const end = input.selectionStart;
    const inserted = `@${member.display_name} `;
    input.value = input.value.slice(0, start) + inserted + input.value.slice(end);
    const caret = start + inserted.length;
    input.setSelectionRange(caret, caret);
    composing.threadId = state.openThreadId;
    composing.picked.set(member.user_id, member.display_name);
    closeSuggestions();
    input.focus();
  }

  input.addEventListener('input', updateSuggestions);
  input.addEventListener('blur', () => closeSuggestions());
  // Capture on the form, so the keys the list uses never reach the
  // composer's own Enter-sends handler.
  $('composer').addEventListener('keydown', (e) => {
    if (e.target !== input || e.isComposing) return;
    if (suggest.options.length === 0) {
      if (e.key === 'Escape' && composing.replyTo) {
        e.preventDefault();
        cancelReply();
      }
      return;
    }
    const n = suggest.options.length;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      suggest.active = (suggest.active + (e.key === 'ArrowDown' ? 1 : n - 1)) % n;
      renderSuggestions();
    } else if (e.key === 'Enter' || e.key === 'Tab') {
      choose(suggest.active);
    } else if (e.key === 'Escape') {
      closeSuggestions();
    } else {
      return;
    }
    e.preventDefault();
    e.stopPropagation();
  }, true);

  $('composer').before(replyBar, listbox);

  // What chat:send carries besides the body: the reply, and the people
  // picked whose `@Name` is still in it. The composer starts over.
  function takeComposed(threadId, body) {
    const extra = {};
    if (composing.threadId === threadId && composing.replyTo) extra.reply_to = composing.replyTo.id;
    const mentions = [];
    if (composing.threadId === threadId) {
      for (const [id, name] of composing.picked) {
        if (body.includes(`@${name}`) && mentions.length < MENTIONS_MAX) mentions.push(id);
      }
    }
    if (mentions.length > 0) extra.mentions = mentions;
    cancelReply();
    composing.picked.clear();
    closeSuggestions();
    return extra;
  }

  // A thread was opened or closed: what was being composed was for another.
  function threadChanged() {
    cancelReply();
    composing.picked.clear();
    composing.threadId = state.openThreadId;
    closeSuggestions();
  }

  // ---- mentions: the thread list's marker --------------------------------

  function mentionsMe(message) {
    return !message.deleted_at && message.sender_id !== state.me.id && (message.mentions ?? []).includes(state.me.id);
  }

  function mentionMarker(thread) {
    const count = thread.unread_mentions ?? 0;
    const marker = el('span', {
      class: 'mention-marker', 'data-testid': 'unread-mention', title: count === 1 ? 'You were mentioned' : `You were mentioned ${count} times`,
    });
    marker.append(el('span', { 'aria-hidden': 'true' }, '@'), el('span', { class: 'visually-hidden' }, count === 1 ? 'mentioned you' : `mentioned you ${count} times`));
    marker.hidden = count === 0;
    return marker;
  }

  // A new message: one that mentions me, past my read cursor, counts.
  function onNewMessage(message, thread) {
    if (mentionsMe(message) && message.seq > thread.last_read_seq) {
      thread.unread_mentions = (thread.unread_mentions ?? 0) + 1;
    }
  }

  // The count from what is held, when everything after the read cursor is
  // held (as app.js's recountUnread); else the server's stands.
  function recountMentions(thread, store) {
    if (thread.last_read_seq >= thread.last_seq) {
      thread.unread_mentions = 0;
    } else if (store && store.oldestSeq <= thread.last_read_seq + 1) {
      thread.unread_mentions = [...store.bySeq.values()].filter((m) => m.seq > thread.last_read_seq && mentionsMe(m)).length;
    }
  }

  return {
    noteRev, isNewer, catchUpChanges, decorate, onReaction, takeComposed, threadChanged,
    mentionMarker, onNewMessage, recountMentions,
  };
}
