// Two people chatting in two real browser sessions (headless Debian
// chromium driven by playwright-core), against a running confab.
//
// Run by `cargo test` (tests/api/browser.rs), which starts the server with
// the Origin allowlist on, creates the company, users and threads, and
// passes them in the environment. Every wait is on something a person
// would see on screen; there are no fixed sleeps.
//
// Going offline: context.setOffline(true) makes new connections fail but
// does not close a WebSocket that is already open, so the page's socket is
// also closed through its debug hook (window.confabDebug.drop) while the
// browser is offline. Redialling then fails until setOffline(false), which
// is what a dropped network looks like to the client.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`chat.spec: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const BASE_URL = env('BASE_URL');
const ADMIN_TOKEN = env('ADMIN_TOKEN');
const A = { id: env('USER_A_ID'), token: env('TOKEN_A'), name: env('NAME_A') };
const B = { id: env('USER_B_ID'), token: env('TOKEN_B'), name: env('NAME_B') };
const C = { id: env('USER_C_ID'), token: env('TOKEN_C'), name: env('NAME_C') };
// In no thread at first: found in the directory and added from the page.
const D = { id: env('USER_D_ID'), name: env('NAME_D') };
// Deactivated while signed in; a member of ALUMNI with A and B.
const E = { id: env('USER_E_ID'), token: env('TOKEN_E'), name: env('NAME_E') };
const ALUMNI = env('ALUMNI_THREAD_ID');
// Active people in the company once E is deactivated: more than a page.
const DIRECTORY_SIZE = Number(env('DIRECTORY_SIZE'));
const TEAM = env('TEAM_THREAD_ID');
const SIDE = env('SIDE_THREAD_ID');
// A thread B never opens: what B's client does with messages it was only told about.
const QUIET = env('QUIET_THREAD_ID');
const HISTORY = env('HISTORY_THREAD_ID');
const HISTORY_SIZE = Number(env('HISTORY_SIZE'));
const SHOTS = process.env.SCREENSHOT_DIR ?? 'target/e2e-screenshots';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const TIMEOUT_MS = 20000;

mkdirSync(SHOTS, { recursive: true });

let failures = 0;
let passed = 0;
const problems = [];

async function step(name, body) {
  const started = Date.now();
  try {
    await body();
    passed += 1;
    console.log(`ok - ${name} (${Date.now() - started} ms)`);
  } catch (err) {
    failures += 1;
    console.log(`not ok - ${name}\n  ${String(err.stack ?? err).split('\n').join('\n  ')}`);
    throw err;
  }
}

function watch(page, who) {
  page.on('pageerror', (err) => problems.push(`${who}: page error: ${err.message}`));
  // The page asks in its own dialogs; a native alert() or confirm() blocks it.
  page.on('dialog', (dialog) => {
    problems.push(`${who}: a native ${dialog.type()} dialog: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });
  page.on('console', (msg) => {
    const text = msg.text();
    // A CSP violation means the page tried something the policy forbids.
    if (/Content Security Policy|Refused to/i.test(text)) problems.push(`${who}: ${text}`);
    if (msg.type() === 'error') console.log(`  [${who} console] ${text}`);
  });
}

const message = (page, text) =>
  page.locator('[data-testid="message"]', { has: page.locator('[data-testid="message-body"]', { hasText: text }) });
const threadItem = (page, id) => page.locator(`[data-testid="thread-item"][data-thread-id="${id}"]`);

async function expectText(locator, text) {
  await locator.filter({ hasText: text }).first().waitFor({ timeout: TIMEOUT_MS });
}

async function waitForAttr(locator, attr, value) {
  await locator.and(locator.page().locator(`[${attr}="${value}"]`)).waitFor({ timeout: TIMEOUT_MS });
}

async function adminAddMember(threadId, userId) {
  const res = await fetch(`${BASE_URL}/admin/threads/${threadId}/members`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ user_id: userId }),
  });
  if (res.status !== 201) throw new Error(`adding a member: ${res.status} ${await res.text()}`);
}

async function adminRemoveMember(threadId, userId) {
  const res = await fetch(`${BASE_URL}/admin/threads/${threadId}/members/${userId}`, {
    method: 'DELETE',
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  if (res.status !== 204) throw new Error(`removing a member: ${res.status} ${await res.text()}`);
}

async function adminCall(method, path, body) {
  const res = await fetch(`${BASE_URL}${path}`, {
    method,
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function userCall(user, method, path, body) {
  const res = await fetch(`${BASE_URL}${path}`, {
    method,
    headers: { Authorization: `Bearer ${user.token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function memberCursor(threadId, userId) {
  const reply = await userCall(A, 'GET', `/api/threads/${threadId}/members`);
  if (reply.status !== 200) throw new Error(`members: ${reply.status} ${JSON.stringify(reply.body)}`);
  const member = reply.body.members.find((m) => m.user_id === userId);
  if (!member) throw new Error(`${userId} is not a member of ${threadId}`);
  return member;
}

// Confirms in the page's own dialog (there is no native confirm()).
async function confirmInPage(page, shot) {
  const dialog = page.getByTestId('confirm-dialog');
  await dialog.waitFor({ timeout: TIMEOUT_MS });
  if (shot) await page.screenshot({ path: join(SHOTS, shot) });
  await dialog.getByTestId('confirm-ok').click();
  await dialog.waitFor({ state: 'hidden', timeout: TIMEOUT_MS });
}

async function openThread(page, id) {
  await threadItem(page, id).locator('button').click();
  await page.locator(`[data-testid="thread-item"].open[data-thread-id="${id}"]`).waitFor({ timeout: TIMEOUT_MS });
}

async function send(page, text) {
  await page.getByTestId('composer-input').fill(text);
  await page.getByTestId('composer-input').press('Enter');
  // Acked: the pending bubble became a stored message with a seq.
  await message(page, text).and(page.locator('[data-seq]')).waitFor({ timeout: TIMEOUT_MS });
}

const receipt = (page, text) => message(page, text).getByTestId('receipt');

// ---- files (issue 17) -------------------------------------------------------
// A attaches an image and a PDF; B sees the image's thumbnail, opens it full
// size and downloads the PDF. Then a drop and a paste. Called once from the
// main sequence, with both pages in the team thread.

// A PNG of `width` × `height`, drawn by the page itself.
async function pngBytes(page, width, height) {
  const bytes = await page.evaluate(async ([w, h]) => {
    const canvas = new OffscreenCanvas(w, h);
    const g = canvas.getContext('2d');
    g.fillStyle = '#2f6fed';
    g.fillRect(0, 0, w, h);
    g.fillStyle = '#ffd000';
    g.fillRect(w / 4, h / 4, w / 2, h / 2);
    const blob = await canvas.convertToBlob({ type: 'image/png' });
    return [...new Uint8Array(await blob.arrayBuffer())];
  }, [width, height]);
  return Buffer.from(bytes);
}

const PDF = Buffer.from('%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n');

// Drops (or pastes) one small text file onto the page, as a person would.
async function dropFile(page, name, text, how) {
  await page.evaluate(([fileName, body, kind]) => {
    const data = new DataTransfer();
    data.items.add(new File([body], fileName, { type: 'text/plain' }));
    if (kind === 'paste') {
      document.getElementById('composer-input')
        .dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
    } else {
      const pane = document.getElementById('thread-pane');
      pane.dispatchEvent(new DragEvent('dragover', { dataTransfer: data, bubbles: true, cancelable: true }));
      pane.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
    }
  }, [name, text, how]);
}

const chip = (page, name) => page.getByTestId('file-chip').filter({ hasText: name });

async function filesSteps(pageA, pageB) {
  await step('files: A attaches an image and a PDF with the button; B sees the thumbnail and a chip', async () => {
    await openThread(pageA, TEAM);
    await openThread(pageB, TEAM);
    const png = await pngBytes(pageA, 800, 400);
    const [chooser] = await Promise.all([
      pageA.waitForEvent('filechooser', { timeout: TIMEOUT_MS }),
      pageA.getByTestId('attach').click(),
    ]);
    await chooser.setFiles([
      { name: 'photo.png', mimeType: 'image/png', buffer: png },
      { name: 'report.pdf', mimeType: 'application/pdf', buffer: PDF },
    ]);
    for (const page of [pageA, pageB]) {
      const thumb = page.getByTestId('attachment-thumbnail').last();
      await thumb.waitFor({ timeout: TIMEOUT_MS });
      await page.waitForFunction((img) => img.complete && img.naturalWidth > 0, await thumb.elementHandle(),
        { timeout: TIMEOUT_MS });
      const size = await thumb.evaluate((img) => [img.naturalWidth, img.naturalHeight, img.src.slice(0, 5)]);
      if (size.join() !== '320,160,blob:') throw new Error(`the thumbnail is ${size}`);
      await expectText(chip(page, 'report.pdf'), 'report.pdf');
    }
    if (!(await pageA.getByTestId('upload-progress').isHidden())) throw new Error('the progress bar stayed');
    await expectText(chip(pageB, 'report.pdf').locator('.file-size'), `${PDF.length} B`);
  });

  await step('files: B opens the image full size and downloads the PDF', async () => {
    await pageB.getByTestId('attachment-image').last().click();
    const full = pageB.getByTestId('image-viewer-img');
    await pageB.waitForFunction((img) => img.complete && img.naturalWidth > 0, await full.elementHandle(),
      { timeout: TIMEOUT_MS });
    const width = await full.evaluate((img) => img.naturalWidth);
    if (width !== 800) throw new Error(`the full image is ${width} wide`);
    await pageB.screenshot({ path: join(SHOTS, 'b-image-viewer.png') });
    await pageB.getByTestId('image-viewer-close').click();
    await pageB.getByTestId('image-viewer').waitFor({ state: 'hidden', timeout: TIMEOUT_MS });

    const [download] = await Promise.all([
      pageB.waitForEvent('download', { timeout: TIMEOUT_MS }),
      chip(pageB, 'report.pdf').click(),
    ]);
    if (download.suggestedFilename() !== 'report.pdf') throw new Error(`saved as ${download.suggestedFilename()}`);
    const chunks = [];
    for await (const part of await download.createReadStream()) chunks.push(part);
    if (!Buffer.concat(chunks).equals(PDF)) throw new Error('the downloaded PDF differs');
  });

  await step('files: a dropped file and a pasted one are sent too', async () => {
    await dropFile(pageA, 'dropped.txt', 'dropped here', 'drop');
    await expectText(chip(pageB, 'dropped.txt'), 'dropped.txt');
    await dropFile(pageA, 'pasted.txt', 'pasted here', 'paste');
    await expectText(chip(pageB, 'pasted.txt'), 'pasted.txt');
    await pageA.screenshot({ path: join(SHOTS, 'a-files.png') });
  });
}
// ---- end of files -------------------------------------------------------------
const person = (scope, name) => scope.getByTestId('person').filter({ has: scope.page().getByTestId('person-name').filter({ hasText: name }) });
const member = (page, name) => page.getByTestId('member').filter({ hasText: name });

// Types into a directory search box and waits for the answer to list
// `expect` (or to say no one matches, for null).
async function search(page, box, list, status, words, expect) {
  await page.getByTestId(box).fill(words);
  if (expect === null) {
    await expectText(page.getByTestId(status), `No one matches “${words}”`);
    return;
  }
  // The rows answer these words (the debounced search has come back).
  await page.locator(`[data-testid="${list}"][data-query="${words}"]`).waitFor({ state: 'attached', timeout: TIMEOUT_MS });
  await person(page.getByTestId(list), expect).waitFor({ timeout: TIMEOUT_MS });
  // Only what matches: the answer to these words, not to earlier ones.
  const names = await page.getByTestId(list).getByTestId('person-name').allTextContents();
  if (names.some((name) => !name.toLowerCase().includes(words.toLowerCase()))) {
    throw new Error(`searching ${JSON.stringify(words)} listed ${JSON.stringify(names)}`);
  }
}

async function openPeople(page) {
  await page.getByTestId('open-people').click();
  await page.getByTestId('people-pane').waitFor({ timeout: TIMEOUT_MS });
  await expectText(page.getByTestId('people-status'), /people|person|No one/);
}

const openThreadId = (page) =>
  page.locator('[data-testid="thread-item"].open').getAttribute('data-thread-id', { timeout: TIMEOUT_MS });

// A third person's page, signed in until the operator acts.
async function signedInPage(user, who) {
  const context = await browser.newContext({ viewport: { width: 900, height: 640 } });
  const page = await context.newPage();
  watch(page, who);
  await page.goto(`${BASE_URL}/#token=${user.token}`);
  await page.locator('[data-testid="conn-status"][data-state="online"]').waitFor({ timeout: TIMEOUT_MS });
  return { context, page };
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});

try {
  const contextA = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const contextB = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const pageA = await contextA.newPage();
  const pageB = await contextB.newPage();
  watch(pageA, 'A');
  watch(pageB, 'B');
  // Every frame B's page sends, to show what its receipts claimed.
  const sentByB = [];
  pageB.on('websocket', (socket) => socket.on('framesent', ({ payload }) => {
    try {
      sentByB.push(JSON.parse(payload));
    } catch {
      // not a frame of ours
    }
  }));

  await step('both sign in from a login link, and the token leaves the address bar', async () => {
    for (const [page, user] of [[pageA, A], [pageB, B]]) {
      await page.goto(`${BASE_URL}/#token=${user.token}`);
      await page.locator('[data-testid="conn-status"][data-state="online"]').waitFor({ timeout: TIMEOUT_MS });
      await expectText(page.getByTestId('me'), user.name);
      const url = page.url();
      if (url.includes('token')) throw new Error(`the token is still in the URL: ${url}`);
      const kept = await page.evaluate(() => sessionStorage.getItem('confab.token'));
      if (kept !== user.token) throw new Error('the token was not kept in sessionStorage');
    }
  });

  await step('each sees the thread list; A opens the team thread, B another one', async () => {
    await openThread(pageA, TEAM);
    await openThread(pageB, SIDE);
    await expectText(pageA.getByTestId('thread-title'), 'team');
    const bob = pageA.locator(`[data-testid="member"]`).filter({ hasText: B.name });
    await waitForAttr(bob, 'data-online', 'true');
    // Presence in words for screen readers, not only a colour.
    await bob.getByRole('img', { name: 'online' }).waitFor({ timeout: TIMEOUT_MS });
    await pageA.getByRole('textbox', { name: 'Message' }).waitFor({ timeout: TIMEOUT_MS });
  });

  const first = 'Hello B, this is A';
  await step('A sends; B sees it arrive live in the thread list with an unread count', async () => {
    await send(pageA, first);
    const item = threadItem(pageB, TEAM);
    await expectText(item.getByTestId('last-message'), first);
    await expectText(item.getByTestId('unread'), '1');
    await expectText(pageB.getByTestId('announcer'), `New message from ${A.name} in team`);
  });

  await step('B\'s client reports delivery; A sees the delivered mark, in words too', async () => {
    await waitForAttr(receipt(pageA, first), 'data-status', 'delivered');
    await expectText(receipt(pageA, first), 'delivered');
  });

  await step('B opens the thread and reads; A sees the read mark and B\'s unread count clears', async () => {
    await openThread(pageB, TEAM);
    await message(pageB, first).waitFor({ timeout: TIMEOUT_MS });
    await waitForAttr(receipt(pageA, first), 'data-status', 'read');
    await expectText(receipt(pageA, first), 'read');
    await threadItem(pageB, TEAM).getByTestId('unread').waitFor({ state: 'hidden', timeout: TIMEOUT_MS });
    // Today's messages show the time; the title has the whole date.
    const title = await message(pageB, first).locator('time').getAttribute('title');
    if (!title?.includes(String(new Date().getFullYear()))) throw new Error(`no date in the time's title: ${title}`);
  });

  const second = 'Are you there?';
  await step('with the thread open, B sees A\'s next message live and reads it at once', async () => {
    await send(pageA, second);
    await message(pageB, second).waitFor({ timeout: TIMEOUT_MS });
    await expectText(pageB.getByTestId('announcer'), `${A.name}: ${second}`);
    await waitForAttr(receipt(pageA, second), 'data-status', 'read');
  });

  const reply = 'Yes, typing a reply right now';
  await step('B types; A sees the typing indicator, and it ends when B sends', async () => {
    await pageB.getByTestId('composer-input').pressSequentially('Yes, typing', { delay: 20 });
    await expectText(pageA.getByTestId('typing-indicator'), `${B.name} is typing`);
    await pageA.screenshot({ path: join(SHOTS, 'a-sees-b-typing.png') });
    await pageB.getByTestId('composer-input').fill(reply);
    await pageB.getByTestId('composer-input').press('Enter');
    await message(pageA, reply).waitFor({ timeout: TIMEOUT_MS });
    await waitForAttr(pageA.getByTestId('typing-indicator'), 'data-active', 'false');
  });

  const edited = 'Hello B, this is A (edited)';
  await step('A edits a message; B sees the new text marked edited', async () => {
    await message(pageA, first).getByTestId('edit').click();
    await pageA.getByTestId('edit-input').fill(edited);
    await pageA.getByTestId('edit-save').click();
    await message(pageB, edited).getByTestId('edited').waitFor({ timeout: TIMEOUT_MS });
    await message(pageA, edited).getByTestId('edited').waitFor({ timeout: TIMEOUT_MS });
  });

  const secondLine = 'and a second line';
  const multiLine = `${edited}\n${secondLine}`;
  await step('A edits it over two lines (Shift+Enter, Enter saves); Escape gives up; B sees both lines', async () => {
    await message(pageA, edited).getByTestId('edit').click();
    const box = pageA.getByRole('textbox', { name: 'Edit message' });
    await box.press('End');
    await box.pressSequentially(' never mind');
    await box.press('Escape');
    await box.waitFor({ state: 'detached', timeout: TIMEOUT_MS });
    if (await message(pageA, 'never mind').count() !== 0) throw new Error('Escape saved the edit');

    await message(pageA, edited).getByTestId('edit').click();
    await box.press('End');
    await box.press('Shift+Enter');
    await box.pressSequentially(secondLine);
    if (await box.inputValue() !== multiLine) throw new Error(`the edit box holds ${JSON.stringify(await box.inputValue())}`);
    await box.press('Enter');
    const onB = message(pageB, secondLine).getByTestId('message-body');
    await onB.waitFor({ timeout: TIMEOUT_MS });
    if (await onB.textContent() !== multiLine) throw new Error(`B sees ${JSON.stringify(await onB.textContent())}`);
    const onA = message(pageA, secondLine).getByTestId('message-body');
    if (await onA.textContent() !== multiLine) throw new Error(`A sees ${JSON.stringify(await onA.textContent())}`);
    await pageB.screenshot({ path: join(SHOTS, 'b-sees-multi-line-edit.png') });
  });

  await step('A deletes a message after confirming in the page; B sees it become a tombstone', async () => {
    const seq = await message(pageA, second).getAttribute('data-seq');
    await message(pageA, second).getByTestId('delete').click();
    await confirmInPage(pageA, 'a-confirms-delete.png');
    const onB = pageB.locator(`[data-testid="message"][data-seq="${seq}"].deleted`);
    await expectText(onB.getByTestId('message-body'), 'message deleted');
    if (await message(pageB, second).count() !== 0) throw new Error('the deleted text is still shown to B');
  });

  const oops = 'Oops, wrong thread';
  await step('A deletes a message in a thread B never opened; B\'s list keeps working', async () => {
    await openThread(pageA, QUIET);
    await send(pageA, oops);
    const item = threadItem(pageB, QUIET);
    await expectText(item.getByTestId('last-message'), oops);
    await expectText(item.getByTestId('unread'), '1');
    await expectText(pageB.getByTestId('announcer'), `New message from ${A.name} in plans`);
    // Live messages are on B's device: delivered.
    await waitForAttr(receipt(pageA, oops), 'data-status', 'delivered');
    await message(pageA, oops).getByTestId('delete').click();
    await confirmInPage(pageA);
    await expectText(item.getByTestId('last-message'), `${A.name}: message deleted`);
    await item.getByTestId('unread').waitFor({ state: 'hidden', timeout: TIMEOUT_MS });
    const still = 'Still here after the delete';
    await openThread(pageB, SIDE);
    await send(pageB, still);
    await expectText(threadItem(pageB, SIDE).getByTestId('last-message'), still);
    await expectText(threadItem(pageA, SIDE).getByTestId('last-message'), still);
    await pageB.screenshot({ path: join(SHOTS, 'b-after-delete-in-unopened-thread.png') });
    if (problems.length > 0) throw new Error(problems.join('\n'));
    await openThread(pageA, TEAM);
    await openThread(pageB, TEAM);
  });

  await step('the operator adds C; both see the member appear live, offline', async () => {
    await adminAddMember(TEAM, C.id);
    for (const page of [pageA, pageB]) {
      await expectText(page.getByTestId('notice'), `${C.name} joined`);
      await waitForAttr(page.getByTestId('member').filter({ hasText: C.name }), 'data-online', 'false');
    }
  });

  const missed = 'Sent while B was offline';
  await step('B goes offline; A sees B\'s dot go grey; B shows it is reconnecting', async () => {
    await contextB.setOffline(true);
    await pageB.evaluate(() => window.confabDebug.drop());
    await pageB.locator('[data-testid="conn-status"][data-state="reconnecting"]').waitFor({ timeout: TIMEOUT_MS });
    await waitForAttr(pageA.getByTestId('member').filter({ hasText: B.name }), 'data-online', 'false');
  });

  const away = 'Sent to plans while B was away';
  let awaySeq = null;
  await step('A sends while B is offline; it stays undelivered', async () => {
    await send(pageA, missed);
    await waitForAttr(receipt(pageA, missed), 'data-status', 'sent');
    await pageB.screenshot({ path: join(SHOTS, 'b-offline-reconnecting.png') });
    if (await message(pageB, missed).count() !== 0) throw new Error('B got a message while offline');
    // And one in the thread B has never opened.
    await openThread(pageA, QUIET);
    await send(pageA, away);
    awaySeq = Number(await message(pageA, away).getAttribute('data-seq'));
    await openThread(pageA, TEAM);
  });

  await step('B comes back, syncs and catches up; A sees it delivered and read', async () => {
    await contextB.setOffline(false);
    await pageB.locator('[data-testid="conn-status"][data-state="online"]').waitFor({ timeout: TIMEOUT_MS });
    await message(pageB, missed).waitFor({ timeout: TIMEOUT_MS });
    await waitForAttr(receipt(pageA, missed), 'data-status', 'read');
    await waitForAttr(pageA.getByTestId('member').filter({ hasText: B.name }), 'data-online', 'true');
    // Nothing twice: each seq appears once.
    const seqs = await pageB.locator('[data-testid="message"][data-seq]').evaluateAll(
      (items) => items.map((item) => item.dataset.seq));
    if (new Set(seqs).size !== seqs.length) throw new Error(`duplicate messages after sync: ${seqs}`);
  });

  await step('B\'s reconnect does not claim delivery of what it never downloaded (no early ✓✓)', async () => {
    // B is online again and has read TEAM since: its catch-up is over.
    const claimed = sentByB.filter((frame) =>
      ['chat:delivered', 'chat:mark-read'].includes(frame.event) &&
      frame.data?.thread_id === QUIET && frame.data.up_to_seq >= awaySeq);
    if (claimed.length > 0) throw new Error(`B claimed it: ${JSON.stringify(claimed)}`);
    const bob = await memberCursor(QUIET, B.id);
    if (bob.last_delivered_seq !== awaySeq - 1) {
      throw new Error(`B's delivered cursor in plans is ${bob.last_delivered_seq}, not ${awaySeq - 1}`);
    }
    await expectText(threadItem(pageB, QUIET).getByTestId('last-message'), away);
    await expectText(threadItem(pageB, QUIET).getByTestId('unread'), '1');
    await openThread(pageA, QUIET);
    await waitForAttr(receipt(pageA, away), 'data-status', 'sent');
    await pageA.screenshot({ path: join(SHOTS, 'a-sees-sent-not-delivered.png') });
    await openThread(pageA, TEAM);
  });

  await step('a send made while offline is retried and delivered once after reconnecting', async () => {
    const queued = 'Queued while offline';
    await contextB.setOffline(true);
    await pageB.evaluate(() => window.confabDebug.drop());
    await pageB.locator('[data-testid="conn-status"][data-state="reconnecting"]').waitFor({ timeout: TIMEOUT_MS });
    await pageB.getByTestId('composer-input').fill(queued);
    await pageB.getByTestId('composer-input').press('Enter');
    await waitForAttr(receipt(pageB, queued), 'data-status', 'pending');
    await contextB.setOffline(false);
    await message(pageA, queued).waitFor({ timeout: TIMEOUT_MS });
    await message(pageB, queued).and(pageB.locator('[data-seq]')).waitFor({ timeout: TIMEOUT_MS });
    if (await message(pageA, queued).count() !== 1) throw new Error('the retried send arrived twice');
  });

  // ---- replies, mentions, reactions, catch-up (web/messages-extras.js) ----
  // Both have TEAM open here.
  const answer = 'Yes, here: replying to that';
  await step('B replies to A\'s message; both see the quote, and clicking it jumps to the target', async () => {
    await message(pageB, missed).hover();
    await message(pageB, missed).getByTestId('reply').click();
    await expectText(pageB.getByTestId('reply-bar'), missed);
    await send(pageB, answer);
    await pageB.getByTestId('reply-bar').waitFor({ state: 'hidden', timeout: TIMEOUT_MS });
    const quoteA = message(pageA, answer).getByTestId('reply-quote');
    await expectText(quoteA, missed);
    await expectText(quoteA.locator('.quote-sender'), 'You');
    await expectText(message(pageB, answer).getByTestId('reply-quote').locator('.quote-sender'), A.name);
    await pageA.screenshot({ path: join(SHOTS, 'extras-1-reply-quote.png') });
    await quoteA.click();
    await waitForAttr(message(pageA, missed), 'data-found', 'true');
  });

  const mentioning = 'can you check this';
  await step('A mentions B through the autocomplete; B, in another thread, gets the @ marker and a highlight', async () => {
    await openThread(pageB, SIDE);
    const input = pageA.getByTestId('composer-input');
    await input.fill('');
    await input.pressSequentially('Thanks @' + B.name.slice(0, 2), { delay: 20 });
    const option = pageA.getByTestId('mention-option').filter({ hasText: B.name });
    await waitForAttr(option, 'aria-selected', 'true');
    const active = await input.getAttribute('aria-activedescendant');
    if (await option.getAttribute('id') !== active) throw new Error(`the composer points at ${active}, not the selected option`);
    await pageA.screenshot({ path: join(SHOTS, 'extras-2-mention-autocomplete.png') });
    await input.press('Enter');
    await pageA.getByTestId('mention-list').waitFor({ state: 'hidden', timeout: TIMEOUT_MS });
    const typed = await input.inputValue();
    if (typed !== `Thanks @${B.name} `) throw new Error(`the composer holds ${JSON.stringify(typed)}`);
    await input.pressSequentially(mentioning, { delay: 5 });
    await input.press('Enter');
    await message(pageA, mentioning).and(pageA.locator('[data-seq]')).waitFor({ timeout: TIMEOUT_MS });
    await expectText(message(pageA, mentioning).getByTestId('mention'), `@${B.name}`);
    const marker = threadItem(pageB, TEAM).getByTestId('unread-mention');
    await marker.waitFor({ timeout: TIMEOUT_MS });
    await pageB.screenshot({ path: join(SHOTS, 'extras-3-mention-marker.png') });
    await openThread(pageB, TEAM);
    const highlight = message(pageB, mentioning).locator('[data-testid="mention"].mention-me');
    await expectText(highlight, `@${B.name}`);
    await marker.waitFor({ state: 'hidden', timeout: TIMEOUT_MS });
    // Read on screen is read on the server: its count clears too.
    for (let tries = 0; ; tries += 1) {
      const thread = (await userCall(B, 'GET', '/api/threads')).body.threads.find((t) => t.id === TEAM);
      if (thread.unread_mentions === 0) break;
      if (tries > 40) throw new Error(`the server still counts ${thread.unread_mentions} unread mentions`);
      await pageB.waitForTimeout(250);
    }
  });

  const reactions = (page, text) => message(page, text).getByTestId('reaction');
  const chip = (page, text, emoji) => message(page, text).locator(`[data-testid="reaction"][data-emoji="${emoji}"]`);
  await step('A reacts from the picker; B sees it live, adds theirs and one typed freely; A sees both live', async () => {
    await message(pageA, answer).hover();
    await message(pageA, answer).getByTestId('react').click();
    await pageA.getByTestId('reaction-picker').waitFor({ timeout: TIMEOUT_MS });
    await pageA.screenshot({ path: join(SHOTS, 'extras-4-reaction-picker.png') });
    await pageA.getByTestId('reaction-pick').filter({ hasText: '👍' }).click();
    await waitForAttr(chip(pageA, answer, '👍'), 'aria-pressed', 'true');
    const seenByB = chip(pageB, answer, '👍');
    await waitForAttr(seenByB, 'aria-pressed', 'false');
    await expectText(seenByB, '👍 1');
    const title = await seenByB.getAttribute('title');
    if (!title.includes(A.name)) throw new Error(`who reacted is not in the tooltip: ${title}`);
    await seenByB.click();
    await waitForAttr(seenByB, 'aria-pressed', 'true');
    await expectText(chip(pageA, answer, '👍'), '👍 2');
    await message(pageB, answer).getByTestId('react').click();
    await pageB.getByTestId('reaction-input').fill('🚀');
    await pageB.getByTestId('reaction-add').click();
    await expectText(chip(pageA, answer, '🚀'), '🚀 1');
    const order = await reactions(pageA, answer).evaluateAll((chips) => chips.map((c) => c.dataset.emoji));
    if (order.join(' ') !== '👍 🚀') throw new Error(`reactions in the order ${order}`);
    await pageA.screenshot({ path: join(SHOTS, 'extras-5-reactions-live.png') });
  });

  const editedOffline = `Thanks @${B.name} ${mentioning} (edited while B was away)`;
  await step('B goes offline; A edits a message and takes back a reaction; B catches up on reconnect', async () => {
    await contextB.setOffline(true);
    await pageB.evaluate(() => window.confabDebug.drop());
    await pageB.locator('[data-testid="conn-status"][data-state="reconnecting"]').waitFor({ timeout: TIMEOUT_MS });
    await message(pageA, mentioning).getByTestId('edit').click();
    await pageA.getByTestId('edit-input').fill(editedOffline);
    await pageA.getByTestId('edit-save').click();
    await message(pageA, editedOffline).getByTestId('edited').waitFor({ timeout: TIMEOUT_MS });
    await chip(pageA, answer, '👍').click();
    await expectText(chip(pageA, answer, '👍'), '👍 1');
    await waitForAttr(chip(pageA, answer, '👍'), 'aria-pressed', 'false');
    if (await message(pageB, editedOffline).count() !== 0) throw new Error('B saw the edit while offline');
    const framesBefore = sentByB.length;
    await contextB.setOffline(false);
    await pageB.locator('[data-testid="conn-status"][data-state="online"]').waitFor({ timeout: TIMEOUT_MS });
    await message(pageB, editedOffline).getByTestId('edited').waitFor({ timeout: TIMEOUT_MS });
    // Brought by the change feed, from the rev B held (chat:sync only
    // brings new messages).
    const asked = sentByB.slice(framesBefore).filter((f) => f.event === 'chat:changes' && f.data?.thread_id === TEAM);
    if (asked.length === 0 || !(asked[0].data.after_rev > 0)) throw new Error(`B's catch-up asked ${JSON.stringify(asked)}`);
    await expectText(chip(pageB, answer, '👍'), '👍 1');
    await waitForAttr(chip(pageB, answer, '👍'), 'aria-pressed', 'true');
    await pageB.screenshot({ path: join(SHOTS, 'extras-6-caught-up-after-reconnect.png') });
  });
  // ---- end of replies, mentions, reactions, catch-up ----

  await step('markup in a message is shown as text and never runs', async () => {
    const hostile = '<img src="x" onerror="window.pwned = true"><b>not bold</b>';
    await openThread(pageA, SIDE);
    await openThread(pageB, SIDE);
    await send(pageA, hostile);
    const body = message(pageB, 'not bold').getByTestId('message-body');
    await body.waitFor({ timeout: TIMEOUT_MS });
    if (await body.textContent() !== hostile) throw new Error(`shown as: ${await body.innerHTML()}`);
    if (await body.locator('img, b').count() !== 0) throw new Error('the markup became elements');
    if (await pageB.evaluate(() => window.pwned)) throw new Error('the handler ran');
    await openThread(pageA, TEAM);
  });

  // ---- search (web/search.js) ----
  await step('A finds a message by its words and jumps to it, far back in a thread not yet open', async () => {
    const box = pageA.getByTestId('search-input');
    await box.fill('"history 3"');
    await box.press('Enter');
    const results = pageA.getByTestId('search-results');
    const found = results.getByTestId('search-result');
    await found.first().waitFor({ timeout: TIMEOUT_MS });
    if (await found.count() !== 1) throw new Error(`expected one result, saw ${await found.count()}`);
    const group = results.getByTestId('search-group');
    if (await group.getAttribute('data-thread-id') !== HISTORY) throw new Error('the result is not grouped under its thread');
    await expectText(group.locator('h3'), 'archive');
    const marks = await found.locator('mark').allTextContents();
    if (marks.join('|') !== 'history|3') throw new Error(`marked: ${marks}`);
    await pageA.screenshot({ path: join(SHOTS, 'a-searches.png') });
    await found.locator('button').click();
    await pageA.locator(`[data-testid="thread-item"].open[data-thread-id="${HISTORY}"]`).waitFor({ state: 'attached', timeout: TIMEOUT_MS });
    // Seq 3 is older than the first page the thread opens with.
    const target = pageA.locator('[data-testid="message"][data-seq="3"][data-found="true"]');
    await target.waitFor({ timeout: TIMEOUT_MS });
    await expectText(target.getByTestId('message-body'), 'history 3');
    if (!await target.isVisible()) throw new Error('the found message is not in view');
  });

  await step('a found message\'s markup is shown as text in the results too', async () => {
    const box = pageA.getByTestId('search-input');
    await box.fill('bold onerror');
    await box.press('Enter');
    const highlight = pageA.getByTestId('search-results').getByTestId('search-highlight');
    await highlight.first().waitFor({ timeout: TIMEOUT_MS });
    const shown = await highlight.first().textContent();
    if (!shown.includes('<img src="x" onerror="window.pwned = true"><b>not bold</b>')) throw new Error(`shown as: ${shown}`);
    if (await highlight.locator('img, b').count() !== 0) throw new Error('the markup became elements');
    const marks = await highlight.first().locator('mark').allTextContents();
    if (!marks.includes('bold') || !marks.includes('onerror')) throw new Error(`marked: ${marks}`);
    if (await pageA.evaluate(() => window.pwned)) throw new Error('the handler ran');
    await pageA.getByTestId('search-close').click();
    await pageA.getByTestId('thread-list').waitFor({ timeout: TIMEOUT_MS });
    await openThread(pageA, TEAM);
  });
  // ---- /search ----

  await filesSteps(pageA, pageB);

  await step('a pasted token signs in; a bad one is refused with a message', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    watch(page, 'A2');
    await page.goto(BASE_URL);
    await page.getByTestId('token-input').fill('not-a-token');
    await page.getByTestId('login-submit').click();
    await expectText(page.locator('#login-error'), 'refused');
    await page.getByTestId('token-input').fill(A.token);
    await page.getByTestId('login-submit').click();
    await page.locator('[data-testid="conn-status"][data-state="online"]').waitFor({ timeout: TIMEOUT_MS });
    await expectText(page.getByTestId('me'), A.name);
    await context.close();
  });

  await step('scrolling up pages back through the history to the first message', async () => {
    await openThread(pageB, HISTORY);
    await expectText(pageB.getByTestId('message-body'), `history ${HISTORY_SIZE}`);
    const oldest = message(pageB, 'history 1').and(pageB.locator('[data-seq="1"]'));
    // Scroll to the top until the oldest message has been paged in.
    while (await oldest.count() === 0) {
      // Counted before scrolling: the page may arrive before a count taken after.
      const shown = await pageB.locator('[data-testid="message"][data-seq]').count();
      await pageB.getByTestId('messages').evaluate((box) => { box.scrollTop = 0; });
      await pageB.waitForFunction(
        (before) => document.querySelectorAll('[data-testid="message"][data-seq]').length > before,
        shown,
        { timeout: TIMEOUT_MS },
      );
    }
    const count = await pageB.locator('[data-testid="message"][data-seq]').count();
    if (count !== HISTORY_SIZE) throw new Error(`expected ${HISTORY_SIZE} messages, saw ${count}`);
  });

  let group = null;
  let dm = null;
  await step('a DM and an untitled group that arrive live are named after the people in them', async () => {
    const direct = await userCall(A, 'POST', '/api/threads', { kind: 'direct', member_ids: [B.id] });
    if (direct.status !== 201) throw new Error(`creating the DM: ${direct.status} ${JSON.stringify(direct.body)}`);
    const created = await userCall(A, 'POST', '/api/threads', { kind: 'group', member_ids: [B.id] });
    if (created.status !== 201) throw new Error(`creating the group: ${created.status} ${JSON.stringify(created.body)}`);
    group = created.body.id;
    dm = direct.body.id;
    for (const id of [dm, group]) {
      await expectText(threadItem(pageB, id).getByTestId('thread-name'), A.name);
      await expectText(threadItem(pageA, id).getByTestId('thread-name'), B.name);
    }
    await pageB.screenshot({ path: join(SHOTS, 'b-sees-new-threads-named.png') });
  });

  await step('B leaves the group from the page after confirming; A sees B leave', async () => {
    await openThread(pageA, group);
    await openThread(pageB, group);
    await pageB.getByTestId('leave').click();
    await pageB.getByTestId('confirm-dialog').waitFor({ timeout: TIMEOUT_MS });
    await pageB.getByTestId('confirm-cancel').click();
    await pageB.getByTestId('confirm-dialog').waitFor({ state: 'hidden', timeout: TIMEOUT_MS });
    await pageB.locator(`[data-testid="thread-item"].open[data-thread-id="${group}"]`).waitFor({ timeout: TIMEOUT_MS });
    await pageB.getByTestId('leave').click();
    await confirmInPage(pageB, 'b-confirms-leaving.png');
    await threadItem(pageB, group).waitFor({ state: 'detached', timeout: TIMEOUT_MS });
    await pageB.locator('#no-thread').waitFor({ timeout: TIMEOUT_MS });
    await expectText(pageA.getByTestId('notice'), `${B.name} left`);
    await pageA.getByTestId('member').filter({ hasText: B.name }).waitFor({ state: 'detached', timeout: TIMEOUT_MS });
    await pageB.screenshot({ path: join(SHOTS, 'b-after-leaving.png') });
    // A direct thread cannot be left (the server refuses): no button offers it.
    await openThread(pageA, dm);
    await expectText(pageA.getByTestId('thread-title'), B.name);
    if (await pageA.getByTestId('leave').isVisible()) throw new Error('a direct thread offers to leave it');
    await openThread(pageA, TEAM);
  });

  await step('the operator removes C and B; both see it live', async () => {
    await openThread(pageB, TEAM);
    await adminRemoveMember(TEAM, C.id);
    for (const page of [pageA, pageB]) {
      await expectText(page.getByTestId('notice'), `${C.name} left`);
      await page.getByTestId('member').filter({ hasText: C.name }).waitFor({ state: 'detached', timeout: TIMEOUT_MS });
    }
    await adminRemoveMember(SIDE, B.id);
    await threadItem(pageB, SIDE).waitFor({ state: 'detached', timeout: TIMEOUT_MS });
    await threadItem(pageA, SIDE).waitFor({ timeout: TIMEOUT_MS });
  });

  await step('E is deactivated while signed in: her page says so and stops reconnecting', async () => {
    const { context, page } = await signedInPage(E, 'E');
    const reply = await adminCall('PATCH', `/admin/users/${E.id}`, { deactivated: true });
    if (reply.status !== 200) throw new Error(`deactivating: ${reply.status} ${JSON.stringify(reply.body)}`);
    await page.locator('#login').waitFor({ timeout: TIMEOUT_MS });
    await expectText(page.locator('#login-error'), 'deactivated');
    if (await page.locator('#app').isVisible()) throw new Error('the chat is still shown');
    if (await page.evaluate(() => sessionStorage.getItem('confab.token')) !== null) throw new Error('the refused token was kept');
    await page.screenshot({ path: join(SHOTS, 'people-0-deactivated-user-signed-out.png') });
    await context.close();
  });

  await step('A pages through the directory and finds people by searching; presence in words', async () => {
    await openThread(pageA, TEAM);
    await openPeople(pageA);
    await expectText(pageA.getByTestId('people-status'), 'more below');
    const rows = pageA.getByTestId('people-list').getByTestId('person');
    if (await rows.count() >= DIRECTORY_SIZE) throw new Error('the first page holds everyone');
    await pageA.getByTestId('people-more').click();
    await pageA.waitForFunction((n) => document.querySelectorAll('#people-list [data-testid="person"]').length === n,
      DIRECTORY_SIZE, { timeout: TIMEOUT_MS });
    await pageA.getByTestId('people-more').waitFor({ state: 'hidden', timeout: TIMEOUT_MS });
    // A deactivated person is not in the directory.
    if (await person(pageA.getByTestId('people-list'), E.name).count() !== 0) throw new Error('E is listed');

    await search(pageA, 'people-search', 'people-list', 'people-status', 'car', C.name);
    const carol = person(pageA.getByTestId('people-list'), C.name);
    await waitForAttr(carol, 'data-online', 'false');
    await carol.getByRole('img', { name: 'offline' }).waitFor({ timeout: TIMEOUT_MS });
    await search(pageA, 'people-search', 'people-list', 'people-status', 'BO', B.name);
    const bob = person(pageA.getByTestId('people-list'), B.name);
    await waitForAttr(bob, 'data-online', 'true');
    await bob.getByRole('img', { name: 'online' }).waitFor({ timeout: TIMEOUT_MS });
    await search(pageA, 'people-search', 'people-list', 'people-status', E.name.toLowerCase(), null);
    await search(pageA, 'people-search', 'people-list', 'people-status', 'car', C.name);
    await pageA.screenshot({ path: join(SHOTS, 'people-1-search.png') });
  });

  let carolDm = null;
  const toCarol = 'Hi Carol, a direct message';
  await step('A starts a direct message with C from the people panel', async () => {
    await person(pageA.getByTestId('people-list'), C.name).getByTestId('person-message').click();
    await expectText(pageA.getByTestId('thread-title'), C.name);
    await pageA.getByTestId('thread-pane').waitFor({ timeout: TIMEOUT_MS });
    carolDm = await openThreadId(pageA);
    if ([TEAM, SIDE, QUIET, HISTORY, dm, group].includes(carolDm)) throw new Error('an old thread opened');
    // A direct thread cannot be renamed, added to or left: nothing offers it.
    for (const action of ['rename', 'add-people', 'leave']) {
      if (await pageA.getByTestId(action).isVisible()) throw new Error(`a direct thread offers ${action}`);
    }
    await send(pageA, toCarol);
    await expectText(threadItem(pageA, carolDm).getByTestId('thread-name'), C.name);
    await pageA.screenshot({ path: join(SHOTS, 'people-2-direct-message.png') });
  });

  await step('B messages A from the people panel: their existing conversation opens, not a second one', async () => {
    const before = await pageB.getByTestId('thread-item').count();
    await openPeople(pageB);
    await search(pageB, 'people-search', 'people-list', 'people-status', 'ali', A.name);
    await person(pageB.getByTestId('people-list'), A.name).getByTestId('person-message').click();
    await expectText(pageB.getByTestId('thread-title'), A.name);
    const opened = await openThreadId(pageB);
    if (opened !== dm) throw new Error(`opened ${opened}, not the existing ${dm}`);
    if (await pageB.getByTestId('thread-item').count() !== before) throw new Error('a thread was added');
  });

  let launch = null;
  await step('A starts a group with B and C, titled, picking each from a search; B sees it arrive', async () => {
    await openPeople(pageA);
    await search(pageA, 'people-search', 'people-list', 'people-status', 'bo', B.name);
    await person(pageA.getByTestId('people-list'), B.name).getByRole('checkbox', { name: `Pick ${B.name} for a new group` }).check();
    await search(pageA, 'people-search', 'people-list', 'people-status', 'car', C.name);
    await person(pageA.getByTestId('people-list'), C.name).getByTestId('person-pick').check();
    await expectText(pageA.getByTestId('group-picked'), `${B.name}, ${C.name}`);
    await pageA.getByLabel('Group name (optional)').fill('launch');
    await pageA.screenshot({ path: join(SHOTS, 'group-1-picking.png') });
    await pageA.getByTestId('group-create').click();
    await expectText(pageA.getByTestId('thread-title'), 'launch');
    launch = await openThreadId(pageA);
    for (const name of [A.name, B.name, C.name]) await member(pageA, name).waitFor({ timeout: TIMEOUT_MS });
    await expectText(threadItem(pageB, launch).getByTestId('thread-name'), 'launch');
    await pageA.screenshot({ path: join(SHOTS, 'group-2-created.png') });
  });

  await step('B reads the group on another device; the unread badge on this one clears live', async () => {
    const kickoff = 'Kick-off at ten';
    await send(pageA, kickoff);
    await expectText(threadItem(pageB, launch).getByTestId('unread'), '1');
    const other = await signedInPage(B, 'B (second device)');
    await openThread(other.page, launch);
    await message(other.page, kickoff).waitFor({ timeout: TIMEOUT_MS });
    await threadItem(pageB, launch).getByTestId('unread').waitFor({ state: 'hidden', timeout: TIMEOUT_MS });
    await other.context.close();
  });

  await step('B renames the group in the page\'s dialog; A sees the new name live', async () => {
    await openThread(pageB, launch);
    await pageB.getByTestId('rename').click();
    const dialog = pageB.getByTestId('rename-dialog');
    await dialog.waitFor({ timeout: TIMEOUT_MS });
    await pageB.getByRole('textbox', { name: 'Name' }).fill('launch crew');
    await pageB.screenshot({ path: join(SHOTS, 'group-3-renaming.png') });
    await pageB.getByRole('textbox', { name: 'Name' }).press('Enter');
    await dialog.waitFor({ state: 'hidden', timeout: TIMEOUT_MS });
    await expectText(pageB.getByTestId('thread-title'), 'launch crew');
    await expectText(pageA.getByTestId('thread-title'), 'launch crew');
    await expectText(threadItem(pageA, launch).getByTestId('thread-name'), 'launch crew');
    await expectText(pageA.getByTestId('notice'), 'Renamed to “launch crew”');
  });

  await step('A adds D from the page; members are not offered again, nor is a deactivated person; B sees D join', async () => {
    await pageA.getByTestId('add-people').click();
    const dialog = pageA.getByTestId('add-dialog');
    await dialog.waitFor({ timeout: TIMEOUT_MS });
    await search(pageA, 'add-search', 'add-list', 'add-status', 'bo', B.name);
    await person(dialog, B.name).getByTestId('already-member').waitFor({ timeout: TIMEOUT_MS });
    if (await person(dialog, B.name).getByTestId('person-add').count() !== 0) throw new Error('B is offered again');
    await search(pageA, 'add-search', 'add-list', 'add-status', E.name, null);
    await search(pageA, 'add-search', 'add-list', 'add-status', 'da', D.name);
    await person(dialog, D.name).getByRole('button', { name: `Add ${D.name} to the group` }).click();
    await expectText(pageA.getByTestId('add-status'), `${D.name} was added`);
    await person(dialog, D.name).getByTestId('already-member').waitFor({ timeout: TIMEOUT_MS });
    await pageA.screenshot({ path: join(SHOTS, 'group-4-adding.png') });
    await pageA.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden', timeout: TIMEOUT_MS });
    await member(pageA, D.name).waitFor({ timeout: TIMEOUT_MS });
    await expectText(pageB.getByTestId('notice'), `${D.name} joined`);
    await member(pageB, D.name).waitFor({ timeout: TIMEOUT_MS });
  });

  await step('A, the creator, removes C after confirming; B, who is not, is offered no removal; B sees it live', async () => {
    if (await pageB.getByTestId('remove-member').count() !== 0) throw new Error('B may not remove members');
    await member(pageA, C.name).getByRole('button', { name: `Remove ${C.name} from the group` }).click();
    await confirmInPage(pageA, 'group-5-confirm-removal.png');
    await member(pageA, C.name).waitFor({ state: 'detached', timeout: TIMEOUT_MS });
    await expectText(pageB.getByTestId('notice'), `${C.name} left`);
    await member(pageB, C.name).waitFor({ state: 'detached', timeout: TIMEOUT_MS });
    await send(pageB, 'Welcome, Dave! Carol moved to the other launch.');
    await message(pageA, 'Welcome, Dave').waitFor({ timeout: TIMEOUT_MS });
    await send(pageA, 'Dave, the checklist is pinned in “team”.');
    await waitForAttr(receipt(pageA, 'the checklist is pinned'), 'data-status', 'read');
    await pageA.screenshot({ path: join(SHOTS, 'group-6-after-removal.png') });
  });

  const newName = `${C.name} Jones`;
  await step('C renames herself; A sees the new name live in their conversation', async () => {
    const reply = await userCall(C, 'PATCH', '/api/me', { display_name: newName });
    if (reply.status !== 200) throw new Error(`renaming: ${reply.status} ${JSON.stringify(reply.body)}`);
    await expectText(threadItem(pageA, carolDm).getByTestId('thread-name'), newName);
    await openThread(pageA, carolDm);
    await expectText(pageA.getByTestId('thread-title'), newName);
    await member(pageA, newName).waitFor({ timeout: TIMEOUT_MS });
  });

  await step('C\'s tokens are revoked while she is signed in: her page asks for a new sign-in', async () => {
    const { context, page } = await signedInPage(C, 'C');
    await expectText(page.getByTestId('me'), newName);
    const reply = await adminCall('POST', `/admin/users/${C.id}/tokens/revoke`);
    if (reply.status !== 204) throw new Error(`revoking: ${reply.status} ${JSON.stringify(reply.body)}`);
    await expectText(page.locator('#login-error'), 'revoked');
    await context.close();
  });

  await step('a deactivated member is still listed, marked deactivated and offline', async () => {
    await openThread(pageA, ALUMNI);
    const erin = member(pageA, E.name);
    await expectText(erin, `${E.name} (deactivated)`);
    await waitForAttr(erin, 'data-online', 'false');
    await erin.getByRole('img', { name: 'offline' }).waitFor({ timeout: TIMEOUT_MS });
    await pageA.screenshot({ path: join(SHOTS, 'people-3-deactivated-member.png') });
    await openThread(pageA, TEAM);
    await openThread(pageB, TEAM);
  });

  const fromPhone = 'Sent from a narrow screen';
  await step('at 375 px wide one pane shows at a time: list, thread, and back', async () => {
    const context = await browser.newContext({ viewport: { width: 375, height: 740 }, isMobile: true, hasTouch: true });
    const page = await context.newPage();
    watch(page, 'B (narrow)');
    await page.goto(`${BASE_URL}/#token=${B.token}`);
    await page.locator('[data-testid="conn-status"][data-state="online"]').waitFor({ timeout: TIMEOUT_MS });
    const list = page.getByTestId('thread-list');
    const pane = page.getByTestId('thread-pane');
    const fits = () => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
    await threadItem(page, TEAM).waitFor({ timeout: TIMEOUT_MS });
    if (!await list.isVisible() || await pane.isVisible()) throw new Error('the list is not shown alone');
    if (!await fits()) throw new Error('the list is wider than the screen');
    await page.screenshot({ path: join(SHOTS, 'narrow-1-list.png') });

    await threadItem(page, TEAM).locator('button').click();
    await pane.waitFor({ timeout: TIMEOUT_MS });
    await list.waitFor({ state: 'hidden', timeout: TIMEOUT_MS });
    await expectText(page.getByTestId('thread-title'), 'team');
    await message(page, secondLine).waitFor({ timeout: TIMEOUT_MS });
    await send(page, fromPhone);
    await message(pageA, fromPhone).waitFor({ timeout: TIMEOUT_MS });
    if (!await fits()) throw new Error('the thread is wider than the screen');
    await page.screenshot({ path: join(SHOTS, 'narrow-2-thread.png') });

    await page.getByTestId('back').click();
    await list.waitFor({ timeout: TIMEOUT_MS });
    await pane.waitFor({ state: 'hidden', timeout: TIMEOUT_MS });
    await page.screenshot({ path: join(SHOTS, 'narrow-3-back-to-list.png') });

    // The browser's back (a phone's back gesture) does the same.
    await threadItem(page, TEAM).locator('button').click();
    await pane.waitFor({ timeout: TIMEOUT_MS });
    await page.goBack();
    await list.waitFor({ timeout: TIMEOUT_MS });
    await pane.waitFor({ state: 'hidden', timeout: TIMEOUT_MS });

    // People is a pane of its own too, and starting a conversation there
    // shows the conversation, from which back returns to the list.
    const people = page.getByTestId('people-pane');
    await page.getByTestId('open-people').click();
    await people.waitFor({ timeout: TIMEOUT_MS });
    await list.waitFor({ state: 'hidden', timeout: TIMEOUT_MS });
    await search(page, 'people-search', 'people-list', 'people-status', 'da', D.name);
    await person(page.getByTestId('people-list'), D.name).getByTestId('person-pick').check();
    if (!await fits()) throw new Error('the people pane is wider than the screen');
    await page.screenshot({ path: join(SHOTS, 'narrow-4-people.png') });
    await page.getByTestId('people-back').click();
    await list.waitFor({ timeout: TIMEOUT_MS });
    await people.waitFor({ state: 'hidden', timeout: TIMEOUT_MS });
    await page.getByTestId('open-people').click();
    await person(page.getByTestId('people-list'), D.name).getByTestId('person-message').click();
    await expectText(page.getByTestId('thread-title'), D.name);
    await people.waitFor({ state: 'hidden', timeout: TIMEOUT_MS });
    if (!await fits()) throw new Error('the new conversation is wider than the screen');
    await page.screenshot({ path: join(SHOTS, 'narrow-5-new-direct-message.png') });
    await page.goBack();
    await list.waitFor({ timeout: TIMEOUT_MS });
    await context.close();
  });

  await step('screenshots', async () => {
    await pageA.screenshot({ path: join(SHOTS, 'a-final.png') });
    await pageB.screenshot({ path: join(SHOTS, 'b-final.png') });
  });

  if (problems.length > 0) {
    failures += 1;
    console.log(`not ok - the pages stayed clean\n  ${problems.join('\n  ')}`);
  } else {
    passed += 1;
    console.log('ok - the pages stayed clean (no page errors, no CSP violations)');
  }
} catch {
  // The failing step has printed why.
} finally {
  await browser.close();
}

console.log(`${passed} passed, ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
