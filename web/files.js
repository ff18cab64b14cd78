// Files in the browser client: uploading with progress, and showing what
// a message carries. Kept apart from app.js, which only calls in here.
//
// Downloads need the bearer token like every /api request, and an <img
// src> or a link cannot send an Authorization header. So the bytes are
// fetched with the header and shown from a blob: URL (the page's CSP
// allows images from 'self' and blob: only). The token never goes into a
// URL, where logs and the Referer would keep it.

// The four image types the server makes thumbnails of and serves inline.
export const INLINE_IMAGES = ['image/jpeg', 'image/png', 'image/gif', 'image/webp'];

export function isInlineImage(mime) {
  return INLINE_IMAGES.includes(String(mime ?? '').split(';')[0].trim().toLowerCase());
}

// POST /api/uploads with the raw bytes. XMLHttpRequest, not fetch: only it
// reports upload progress. Resolves with the upload, rejects with
// {status, code, message}.
export function uploadFile(token, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `/api/uploads?name=${encodeURIComponent(file.name || 'pasted')}`);
    xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
    xhr.responseType = 'json';
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener('load', () => {
      if (xhr.status === 201) resolve(xhr.response);
      else {
        const error = xhr.response?.error ?? {};
        reject({ status: xhr.status, code: error.code ?? 'internal', message: error.message ?? `HTTP ${xhr.status}` });
      }
    });
    xhr.addEventListener('error', () => reject({ status: 0, code: 'unavailable', message: 'network error' }));
    xhr.send(file);
  });
}

// path -> Promise of a blob: URL; one fetch per file per page.
const blobUrls = new Map();

// The bytes at `path` as a blob: URL. The blob's type is the served one
// only for the four inline image types, anything else is plain bytes, so
// a blob: URL (same origin as the page) can never render as HTML.
export function blobUrl(token, path) {
  if (!blobUrls.has(path)) {
    const loading = fetch(path, { headers: { Authorization: `Bearer ${token}` } })
      .then(async (res) => {
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        const served = res.headers.get('Content-Type');
        const type = isInlineImage(served) ? served : 'application/octet-stream';
        return URL.createObjectURL(new Blob([await res.arrayBuffer()], { type }));
      });
    loading.catch(() => blobUrls.delete(path));
    blobUrls.set(path, loading);
  }
  return blobUrls.get(path);
}

export function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

// What a message with `metadata.upload_id` shows: an image from its
// thumbnail (click: the full image in `viewer`), or a chip with the file's
// name and size that downloads it.
export function uploadElement(token, metadata, viewer) {
  if (metadata.thumbnail_url && isInlineImage(metadata.mime)) {
    const button = el('button', { type: 'button', class: 'attachment-image', 'data-testid': 'attachment-image',
      title: `${metadata.name} (${formatSize(metadata.size)})` });
    const img = el('img', { alt: metadata.name, 'data-testid': 'attachment-thumbnail' });
    button.append(img);
    blobUrl(token, metadata.thumbnail_url).then(
      (url) => { img.src = url; },
      () => { button.replaceWith(fileChip(token, metadata)); },
    );
    button.addEventListener('click', () => openViewer(token, metadata, viewer));
    return button;
  }
  return fileChip(token, metadata);
}

function fileChip(token, metadata) {
  const chip = el('a', { class: 'file-chip', 'data-testid': 'file-chip', href: '#', download: metadata.name });
  chip.append(el('span', { class: 'file-name' }, `📎 ${metadata.name}`),
    el('span', { class: 'file-size' }, formatSize(metadata.size)));
  chip.addEventListener('click', async (e) => {
    if (chip.dataset.ready === 'true') return; // the browser downloads it
    e.preventDefault();
    try {
      chip.href = await blobUrl(token, metadata.url);
      chip.dataset.ready = 'true';
      chip.click();
    } catch (err) {
      chip.title = `Could not download: ${err.message}`;
    }
  });
  return chip;
}

async function openViewer(token, metadata, viewer) {
  const img = viewer.querySelector('img');
  const caption = viewer.querySelector('figcaption');
  img.removeAttribute('src');
  img.alt = metadata.name;
  caption.textContent = `${metadata.name} (${formatSize(metadata.size)})`;
  if (!viewer.open) viewer.showModal();
  try {
    img.src = await blobUrl(token, metadata.url);
  } catch (err) {
    caption.textContent = `${metadata.name}: could not load (${err.message})`;
  }
}

// The composer's ways in: the attach button, pasting and dropping files.
// `onFiles` gets each batch of File objects.
export function wireAttachments({ button, input, dropTarget, pasteTarget, onFiles }) {
  button.addEventListener('click', () => input.click());
  input.addEventListener('change', () => {
    const files = [...input.files];
    input.value = '';
    if (files.length) onFiles(files);
  });
  pasteTarget.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files ?? [])];
    if (files.length) {
      e.preventDefault();
      onFiles(files);
    }
  });
  dropTarget.addEventListener('dragover', (e) => {
    if ([...(e.dataTransfer?.types ?? [])].includes('Files')) {
      e.preventDefault();
      dropTarget.classList.add('dropping');
    }
  });
  dropTarget.addEventListener('dragleave', () => dropTarget.classList.remove('dropping'));
  dropTarget.addEventListener('drop', (e) => {
    dropTarget.classList.remove('dropping');
    const files = [...(e.dataTransfer?.files ?? [])];
    if (files.length) {
      e.preventDefault();
      onFiles(files);
    }
  });
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}
