import { el } from './dom';

// A short message in a live region, read out by screen readers too.
export function toast(message: string, error = false): void {
  let region = document.getElementById('toasts');
  if (!region) {
    region = el('div', { id: 'toasts', 'aria-live': 'polite', role: 'status' });
    document.body.appendChild(region);
  }
  const item = el('div', { class: `toast${error ? ' error' : ''}` }, message);
  region.appendChild(item);
  window.setTimeout(() => item.remove(), error ? 8000 : 4000);
}
