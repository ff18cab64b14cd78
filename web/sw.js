// confab's service worker: shows the Web Push notifications the server
// sends for messages a member missed, and opens (or focuses) the thread
// when one is clicked. Registered from /static/sw.js with scope "/"
// (the server allows it with Service-Worker-Allowed).

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('push', (event) => {
  let payload = {};
  try {
    payload = event.data ? event.data.json() : {};
  } catch {
    payload = {};
  }
  const title = typeof payload.title === 'string' && payload.title ? payload.title : 'confab';
  // "<sender>: <text>", already cut to 200 characters by the server.
  const body = typeof payload.body === 'string' ? payload.body : 'New messages';
  event.waitUntil(self.registration.showNotification(title, {
    body,
    // One notification per thread: a newer one replaces it.
    tag: `confab-thread-${payload.thread_id ?? ''}`,
    renotify: true,
    icon: '/static/icon.svg',
    data: { thread_id: payload.thread_id, seq: payload.seq },
  }));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const threadId = event.notification.data?.thread_id;
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    const open = windows.find((w) => new URL(w.url).origin === self.location.origin);
    if (open) {
      await open.focus();
      if (threadId) open.postMessage({ type: 'confab:open-thread', thread_id: threadId });
      return;
    }
    await self.clients.openWindow(threadId ? `/#thread=${encodeURIComponent(threadId)}` : '/');
  })());
});
