// c10d's native classes (native/distributed.cc: TCPStore, ProcessGroupGloo, Reducer) and their handle types, for
// src/distributed/c10d.ts, which wraps them with the errors users see. Present when the addon was built with Gloo's
// headers; otherwise the addon says why and c10dClasses() throws that reason as a SetupError.
import { SetupError } from '../errors';
import { native, Native } from './binding';

export type {
  C10dGroupOptions,
  C10dReducerOptions,
  C10dStoreOptions,
  NativeC10dGroup,
  NativeC10dReducer,
  NativeC10dStore,
  ReducerTimings,
} from './binding';

export type C10dClasses = Required<Pick<Native, 'C10dStore' | 'C10dProcessGroup' | 'C10dReducer'>>;

/** The store, process group and reducer constructors; a SetupError saying why when the build has no c10d. */
export function c10dClasses(): C10dClasses {
  const n = native();
  if (!n.C10dStore || !n.C10dProcessGroup || !n.C10dReducer) {
    throw new SetupError(n.c10dUnavailable ?? 'this native engine has no c10d: rebuild it with npm run build:addon');
  }
  return n as C10dClasses;
}
