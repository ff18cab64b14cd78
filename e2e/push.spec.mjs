// Notifications in a real browser (headless Debian chromium driven by
// playwright-core), against a running confab.
//
// Run by `cargo test` (tests/api/browser.rs), which also plays the push
// service: it subscribed B with keys of its own, had A send while B was
// offline, received the server's encrypted push, decrypted it, and passes
// the payload here as PUSH_PAYLOAD. Headless chromium cannot subscribe to
// a push service itself (PushManager.subscribe is refused), so the payload
// is delivered to the page's real service worker through the DevTools
// protocol, as the browser's push service would.

import { chromium } from 'playwright-core';

function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`push.spec: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const BASE_URL = env('BASE_URL');
const A = { token: env('TOKEN_A'), name: env('NAME_A') };
const B = { token: env('TOKEN_B') };
const TEAM = env('TEAM_THREAD_ID');
const QUIET = env('QUIET_THREAD_ID');
const PUSH_PAYLOAD = env('PUSH_PAYLOAD');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const TIMEOUT_MS = 20000;

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

async function until(what, check) {
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    const got = await check();
    if (got) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });

try {
  const contextB = await browser.newContext({ viewport: { width: 900, height: 640 } });
  await contextB.grantPermissions(['notifications'], { origin: BASE_URL });
  const pageB = await contextB.newPage();
  pageB.on('pageerror', (err) => problems.push(`B: page error: ${err.message}`));
  pageB.on('console', (msg) => {
    if (/Content Security Policy|Refused to/i.test(msg.text())) problems.push(`B: ${msg.text()}`);
  });

  await step('a notification link opens its thread (what a click opens when no tab is open)', async () => {
    await pageB.goto(`${BASE_URL}/#token=${B.token}&thread=${TEAM}`);
    await pageB.locator('[data-testid="conn-status"][data-state="online"]').waitFor({ timeout: TIMEOUT_MS });
    await pageB.getByTestId('thread-title').filter({ hasText: 'team' }).first().waitFor({ timeout: TIMEOUT_MS });
    if (pageB.url().includes('token=')) throw new Error('the token stayed in the address bar');
  });

  await step('the tab title counts unread messages', async () => {
    await until('a title without unread', async () => (await pageB.title()) === 'confab');
    const contextA = await browser.newContext();
    const pageA = await contextA.newPage();
    await pageA.goto(`${BASE_URL}/#token=${A.token}&thread=${QUIET}`);
    await pageA.getByTestId('thread-title').filter({ hasText: 'quiet' }).first().waitFor({ timeout: TIMEOUT_MS });
    await pageA.getByTestId('composer-input').fill('in the quiet thread');
    await pageA.getByTestId('composer-input').press('Enter');
    await until('"(1) confab"', async () => (await pageB.title()) === '(1) confab');
    await contextA.close();
  });

  await step('turning notifications on registers the service worker for the whole client', async () => {
    const toggle = pageB.getByTestId('push-toggle');
    await toggle.waitFor({ timeout: TIMEOUT_MS });
    await toggle.click();
    const scope = await until('a service worker', () => pageB.evaluate(async () => {
      const reg = await navigator.serviceWorker.getRegistration('/');
      return reg?.active ? reg.scope : null;
    }));
    if (scope !== `${BASE_URL}/`) throw new Error(`scope ${scope}`);
  });

  await step("the server's push shows the thread's notification", async () => {
    const cdp = await contextB.newCDPSession(pageB);
    const registrations = [];
    cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => registrations.push(...e.registrations));
    await cdp.send('ServiceWorker.enable');
    const registration = await until('the registration', async () =>
      registrations.find((r) => !r.isDeleted && r.scopeURL === `${BASE_URL}/`));
    await cdp.send('ServiceWorker.deliverPushMessage', {
      origin: BASE_URL,
      registrationId: registration.registrationId,
      data: PUSH_PAYLOAD,
    });
    const payload = JSON.parse(PUSH_PAYLOAD);
    const shown = await until('a notification', () => pageB.evaluate(async () => {
      const reg = await navigator.serviceWorker.getRegistration('/');
      const all = await reg.getNotifications();
      return all.length ? all.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data })) : null;
    }));
    const [n] = shown;
    if (shown.length !== 1 || n.title !== payload.title || n.body !== payload.body
        || n.tag !== `confab-thread-${TEAM}` || n.data?.thread_id !== TEAM) {
      throw new Error(`shown: ${JSON.stringify(shown)}, pushed: ${PUSH_PAYLOAD}`);
    }
    if (!n.body.startsWith(`${A.name}: `)) throw new Error(`the body names the sender: ${n.body}`);
  });

  if (problems.length > 0) {
    failures += 1;
    console.log(`not ok - the page stayed clean\n  ${problems.join('\n  ')}`);
  } else {
    passed += 1;
    console.log('ok - the page stayed clean (no page errors, no CSP violations)');
  }
} catch {
  // The failing step has printed why.
} finally {
  await browser.close();
}

console.log(`${passed} passed, ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
