// The user API over fetch: every call carries the bearer token, and every
// failure becomes an ApiError holding the contract's error code.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function userApi(token) {
  async function call(method, path, body) {
    const headers = { Authorization: `Bearer ${token}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, 'unavailable', `network error: ${err.message}`);
    }
    if (res.status === 204) return null;
    const json = await res.json().catch(() => null);
    if (!res.ok) {
      const error = json?.error ?? {};
      throw new ApiError(res.status, error.code ?? 'internal', error.message ?? res.statusText);
    }
    return json;
  }

  return {
    me: () => call('GET', '/api/me'),
    threads: () => call('GET', '/api/threads'),
    users: (q, limit, after) => {
      const query = new URLSearchParams({ limit: String(limit) });
      if (q) query.set('q', q);
      if (after) query.set('after', after);
      return call('GET', `/api/users?${query}`);
    },
    createThread: (body) => call('POST', '/api/threads', body),
    renameThread: (threadId, title) => call('PATCH', `/api/threads/${threadId}`, { title }),
    addMember: (threadId, userId) => call('POST', `/api/threads/${threadId}/members`, { user_id: userId }),
    removeMember: (threadId, userId) => call('DELETE', `/api/threads/${threadId}/members/${userId}`),
    members: (threadId) => call('GET', `/api/threads/${threadId}/members`),
    leave: (threadId) => call('DELETE', `/api/threads/${threadId}/members/me`),
    newestMessages: (threadId, limit) =>
      call('GET', `/api/threads/${threadId}/messages?limit=${limit}`),
    messagesBefore: (threadId, beforeSeq, limit) =>
      call('GET', `/api/threads/${threadId}/messages?before_seq=${beforeSeq}&limit=${limit}`),
    editMessage: (messageId, body) => call('PATCH', `/api/messages/${messageId}`, { body }),
    deleteMessage: (messageId) => call('DELETE', `/api/messages/${messageId}`),
    search: (q, { limit, before } = {}) => {
      const params = new URLSearchParams({ q });
      if (limit) params.set('limit', String(limit));
      if (before) params.set('before', before);
      return call('GET', `/api/search?${params}`);
    },
    vapidPublicKey: () => call('GET', '/api/push/vapid-public-key'),
    subscribePush: (subscription) => call('POST', '/api/push-subscriptions', subscription),
    unsubscribePush: (id) => call('DELETE', `/api/push-subscriptions/${id}`),
  };
}
