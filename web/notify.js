// Notifications in the page: the unread count in the tab's title, the
// Notification API while the tab is hidden (the server does not push to a
// member who is online), and the setting that turns on Web Push for when
// the tab is closed (permission, service worker, subscription).

const SUBSCRIPTION_KEY = 'confab.push-subscription';

// A notification clicked while no tab was open opens "/#thread=<id>".
const wantedThread = new URLSearchParams(location.hash.slice(1)).get('thread');

export function threadFromLink() {
  return wantedThread;
}

// "(3) confab" while three messages are unread, "confab" otherwise.
export function showUnreadInTitle(threads) {
  let unread = 0;
  for (const thread of threads) unread += thread.unread ?? 0;
  document.title = unread > 0 ? `(${unread}) confab` : 'confab';
}

export function notificationsSupported() {
  return 'Notification' in window && 'serviceWorker' in navigator && 'PushManager' in window;
}

function base64UrlToBytes(text) {
  const padded = text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

async function registration() {
  return navigator.serviceWorker.register('/static/sw.js', { scope: '/' });
}

// Asks the browser's permission, subscribes with the server's VAPID key,
// and hands the subscription to the server. Returns the subscription id.
export async function enablePush(api) {
  const permission = await Notification.requestPermission();
  if (permission !== 'granted') throw new Error('the browser did not allow notifications');
  const reg = await registration();
  await navigator.serviceWorker.ready;
  const { key } = await api.vapidPublicKey();
  let subscription = await reg.pushManager.getSubscription();
  if (subscription) {
    // Made with another key (the server's was replaced): start over.
    const current = new Uint8Array(subscription.options?.applicationServerKey ?? []);
    const wanted = base64UrlToBytes(key);
    if (current.length !== wanted.length || current.some((b, i) => b !== wanted[i])) {
      await subscription.unsubscribe();
      subscription = null;
    }
  }
  subscription ??= await reg.pushManager.subscribe({
    userVisibleOnly: true,
    applicationServerKey: base64UrlToBytes(key),
  });
  const { id } = await api.subscribePush(subscription.toJSON());
  localStorage.setItem(SUBSCRIPTION_KEY, id);
  return id;
}

export async function disablePush(api) {
  const id = localStorage.getItem(SUBSCRIPTION_KEY);
  localStorage.removeItem(SUBSCRIPTION_KEY);
  const reg = await navigator.serviceWorker.getRegistration('/');
  const subscription = await reg?.pushManager.getSubscription();
  await subscription?.unsubscribe();
  if (id) await api.unsubscribePush(id).catch(() => {});
}

export function pushEnabled() {
  return notificationsSupported() && Notification.permission === 'granted' && localStorage.getItem(SUBSCRIPTION_KEY) !== null;
}

// A message for a hidden tab: the page is online, so no push comes; the
// Notification API tells instead, one notification per thread.
export async function notifyWhileHidden({ title, body, threadId, onClick }) {
  if (document.visibilityState !== 'hidden') return;
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  const text = body.length > 200 ? `${body.slice(0, 199)}…` : body;
  const options = { body: text, tag: `confab-thread-${threadId}`, renotify: true, icon: '/static/icon.svg', data: { thread_id: threadId } };
  const reg = 'serviceWorker' in navigator ? await navigator.serviceWorker.getRegistration('/') : null;
  if (reg) {
    // Clicks reach the service worker, which focuses this tab and asks it
    // (onOpenRequest) to open the thread.
    await reg.showNotification(title, options);
    return;
  }
  const shown = new Notification(title, options);
  shown.onclick = () => {
    window.focus();
    onClick();
    shown.close();
  };
}

// The service worker asks an open tab to show a clicked thread.
export function onOpenRequest(open) {
  if (!('serviceWorker' in navigator)) return;
  navigator.serviceWorker.addEventListener('message', (event) => {
    if (event.data?.type === 'confab:open-thread' && typeof event.data.thread_id === 'string') {
      open(event.data.thread_id);
    }
  });
}
