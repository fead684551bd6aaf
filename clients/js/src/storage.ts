/** Where a session is kept between page loads: localStorage in a browser, memory elsewhere, or
 * any store with the same three methods (a file, AsyncStorage behind a cache, a cookie jar). */

export interface SessionStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export function memoryStore(): SessionStore {
  const values = new Map<string, string>();
  return {
    getItem: (key) => values.get(key) ?? null,
    setItem: (key, value) => void values.set(key, value),
    removeItem: (key) => void values.delete(key),
  };
}

export function defaultStore(): SessionStore {
  try {
    const local = (globalThis as { localStorage?: SessionStore }).localStorage;
    if (local) {
      local.getItem("litebase.probe"); // throws where storage is blocked (some private modes)
      return local;
    }
  } catch {
    // fall through to memory
  }
  return memoryStore();
}

/** The browser tab's sessionStorage (it outlives a trip to a sign-in provider and back, and
 * other tabs never see it), or null where there is none. */
export function tabStore(): SessionStore | null {
  try {
    const tab = (globalThis as { sessionStorage?: SessionStore }).sessionStorage;
    if (tab) {
      tab.getItem("litebase.probe");
      return tab;
    }
  } catch {
    // blocked storage: fall back
  }
  return null;
}
