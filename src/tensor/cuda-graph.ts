// CUDA graphs (native/cuda_graph.cc), typed: record the CUDA work queued on this thread's side stream once, replay
// it with one call. Present only in CUDA builds that found the CUDA headers (build-info.json: cudaGraphs).
import { SetupError } from '../errors';
import { native, Native } from './binding';

type Graphs = Required<
  Pick<Native, 'cudaUseSideStream' | 'cudaGraphBegin' | 'cudaGraphEnd' | 'cudaGraphReplay' | 'cudaGraphRelease'>
>;

/** Whether this build of the addon has CUDA graphs. */
export function cudaGraphsAvailable(): boolean {
  return typeof native().cudaGraphBegin === 'function';
}

function graphs(): Graphs {
  if (!cudaGraphsAvailable()) throw new SetupError('this build of the addon has no CUDA graphs');
  return native() as Graphs;
}

/** Moves this thread's CUDA work on `device` to a side stream (graphs are recorded there, after warm-up there). */
export function cudaUseSideStream(device: number): void {
  graphs().cudaUseSideStream(device);
}

/** Starts recording the CUDA work queued on this thread's (side) stream; returns the graph's id. */
export function cudaGraphBegin(): number {
  return graphs().cudaGraphBegin();
}

/** Ends the recording of graph `id`: it can be replayed. */
export function cudaGraphEnd(id: number): void {
  graphs().cudaGraphEnd(id);
}

/** Runs graph `id`'s recorded work again on the current stream. */
export function cudaGraphReplay(id: number): void {
  graphs().cudaGraphReplay(id);
}

/** Frees graph `id` and its memory pool. */
export function cudaGraphRelease(id: number): void {
  graphs().cudaGraphRelease(id);
}
