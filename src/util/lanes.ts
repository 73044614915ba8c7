// A bounded-concurrency map: `lanes` async workers take the items in order, so at most `lanes` calls are in flight;
// the results keep the items' order. The decode workers (data/decode-worker.ts, infer/decode-lanes-worker.ts) use it.

export async function mapInLanes<T, R>(items: readonly T[], lanes: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(lanes, items.length) }, lane));
  return results;
}
