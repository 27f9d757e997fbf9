/** What `work` settles to, or a rejection ('no answer') once `ms` have passed first; the timer is cleared either way. */
export async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([work, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no answer')), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
