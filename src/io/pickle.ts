// A restricted unpickler for PyTorch state dicts. It builds plain values (dicts, lists, tuples, numbers,
// strings) and calls only the functions on an allow-list (OrderedDict and the tensor-rebuild functions):
// a pickle that asks for any other global (os.system, builtins.eval, …) is rejected before anything runs.
import { FormatError } from '../errors';

export interface PickleGlobal {
  module: string;
  name: string;
}

export interface PickleHooks {
  /** Resolves an allowed global to a callable; returning undefined rejects it. */
  global(module: string, name: string): ((...args: unknown[]) => unknown) | undefined;
  /** Resolves a persistent id (torch.save uses them for storages). */
  persistentLoad(pid: unknown): unknown;
}

const MARK = Symbol('mark');

/** A dict that remembers insertion order and carries attributes set by BUILD (OrderedDict's _metadata). */
export class PickleDict extends Map<unknown, unknown> {
  attributes: Record<string, unknown> = {};
}

/** Unpickles the one pickle that fills `data`. */
export function unpickle(data: Buffer, hooks: PickleHooks, file: string): unknown {
  return unpickleAt(data, 0, hooks, file).value;
}

/** A little-endian two's-complement integer of `b`: a number when it is exact as one, a bigint otherwise. */
function littleEndianInt(b: Uint8Array): number | bigint {
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  if (b.length && b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

// One switch over the pickle opcodes is the interpreter: split up, the stack and memo would have to be threaded
// through a dozen helpers and the opcode table would no longer read as the protocol's list.
/**
 * Unpickles one pickle starting at byte `start` of `data` (the legacy torch.save format is several pickles in a
 * row): its value and the byte after its STOP.
 */
// eslint-disable-next-line max-lines-per-function
export function unpickleAt(
  data: Buffer,
  start: number,
  hooks: PickleHooks,
  file: string,
): { value: unknown; end: number } {
  const bad = (why: string) => new FormatError(`${file}: ${why}`);
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  let pos = start;
  const need = (n: number) => {
    if (pos + n > data.length) throw bad('the pickle is truncated');
  };
  const u8 = () => {
    need(1);
    return data[pos++];
  };
  const u16 = () => {
    need(2);
    const v = data.readUInt16LE(pos);
    pos += 2;
    return v;
  };
  const u32 = () => {
    need(4);
    const v = data.readUInt32LE(pos);
    pos += 4;
    return v;
  };
  const i32 = () => {
    need(4);
    const v = data.readInt32LE(pos);
    pos += 4;
    return v;
  };
  const bytes = (n: number) => {
    need(n);
    const b = data.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const line = () => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) throw bad('the pickle is truncated');
    const s = data.toString('utf8', pos, end);
    pos = end + 1;
    return s;
  };
  const popMark = (): unknown[] => {
    for (let i = stack.length - 1; i >= 0; i--) {
      if (stack[i] === MARK) {
        const items = stack.slice(i + 1);
        stack.length = i;
        return items;
      }
    }
    throw bad('the pickle is malformed (no MARK)');
  };
  const pop = () => {
    if (!stack.length) throw bad('the pickle is malformed (stack underflow)');
    return stack.pop();
  };
  const top = () => {
    if (!stack.length) throw bad('the pickle is malformed (empty stack)');
    return stack[stack.length - 1];
  };
  const resolve = (module: string, name: string) => {
    const f = hooks.global(module, name);
    if (!f)
      throw bad(
        `the pickle asks for the global ${module}.${name}, which is not allowed: only tensor data and the functions that rebuild tensors are loaded (no code from the file is ever run)`,
      );
    return f;
  };
  const setItems = (d: unknown, items: unknown[]) => {
    if (!(d instanceof Map)) throw bad('the pickle sets items on something that is not a dict');
    for (let i = 0; i + 1 < items.length; i += 2) d.set(items[i], items[i + 1]);
  };
  const call = (f: unknown, args: unknown) => {
    if (typeof f !== 'function') throw bad('the pickle calls something that is not an allowed function');
    if (!Array.isArray(args)) throw bad('the pickle calls a function without an argument tuple');
    return f(...args);
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80:
        u8();
        break; // PROTO
      case 0x95:
        bytes(8);
        break; // FRAME
      case 0x2e:
        return { value: pop(), end: pos }; // STOP
      case 0x30:
        pop();
        break; // POP
      case 0x31:
        popMark();
        break; // POP_MARK
      case 0x32:
        stack.push(top());
        break; // DUP
      case 0x28:
        stack.push(MARK);
        break; // MARK
      case 0x7d:
        stack.push(new PickleDict());
        break; // EMPTY_DICT
      case 0x5d:
        stack.push([]);
        break; // EMPTY_LIST
      case 0x29:
        stack.push([]);
        break; // EMPTY_TUPLE
      case 0x4e:
        stack.push(null);
        break; // NONE
      case 0x88:
        stack.push(true);
        break; // NEWTRUE
      case 0x89:
        stack.push(false);
        break; // NEWFALSE
      case 0x4b:
        stack.push(u8());
        break; // BININT1
      case 0x4d:
        stack.push(u16());
        break; // BININT2
      case 0x4a:
        stack.push(i32());
        break; // BININT
      case 0x8a:
        stack.push(littleEndianInt(bytes(u8())));
        break; // LONG1 (a bigint beyond 2^53: torch.save's magic number is one)
      case 0x8b: {
        const n = u32();
        if (n > 64) throw bad(`the pickle holds a ${n}-byte integer`);
        stack.push(littleEndianInt(bytes(n)));
        break;
      } // LONG4
      case 0x47: {
        need(8);
        stack.push(data.readDoubleBE(pos));
        pos += 8;
        break;
      } // BINFLOAT
      case 0x58: {
        const n = u32();
        stack.push(bytes(n).toString('utf8'));
        break;
      } // BINUNICODE
      case 0x8c: {
        const n = u8();
        stack.push(bytes(n).toString('utf8'));
        break;
      } // SHORT_BINUNICODE
      case 0x8d: {
        need(8);
        const n = Number(data.readBigUInt64LE(pos));
        pos += 8;
        stack.push(bytes(n).toString('utf8'));
        break;
      } // BINUNICODE8
      case 0x54: {
        const n = u32();
        stack.push(bytes(n).toString('latin1'));
        break;
      } // BINSTRING
      case 0x55: {
        const n = u8();
        stack.push(bytes(n).toString('latin1'));
        break;
      } // SHORT_BINSTRING
      case 0x43: {
        const n = u8();
        stack.push(Buffer.from(bytes(n)));
        break;
      } // SHORT_BINBYTES
      case 0x42: {
        const n = u32();
        stack.push(Buffer.from(bytes(n)));
        break;
      } // BINBYTES
      case 0x71:
        memo.set(u8(), top());
        break; // BINPUT
      case 0x72:
        memo.set(u32(), top());
        break; // LONG_BINPUT
      case 0x94:
        memo.set(memo.size, top());
        break; // MEMOIZE
      case 0x68:
      case 0x6a: {
        // BINGET, LONG_BINGET
        const k = op === 0x68 ? u8() : u32();
        if (!memo.has(k)) throw bad(`the pickle refers to memo entry ${k}, which does not exist`);
        stack.push(memo.get(k));
        break;
      }
      case 0x74:
        stack.push(popMark());
        break; // TUPLE
      case 0x85:
        stack.push([pop()]);
        break; // TUPLE1
      case 0x86: {
        const b = pop();
        const a = pop();
        stack.push([a, b]);
        break;
      } // TUPLE2
      case 0x87: {
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push([a, b, c]);
        break;
      } // TUPLE3
      case 0x63: {
        const module = line();
        const name = line();
        stack.push(resolve(module, name));
        break;
      } // GLOBAL
      case 0x93: {
        const name = pop();
        const module = pop();
        stack.push(resolve(String(module), String(name)));
        break;
      } // STACK_GLOBAL
      case 0x52: {
        const args = pop();
        const f = pop();
        stack.push(call(f, args));
        break;
      } // REDUCE
      case 0x81: {
        const args = pop();
        const cls = pop();
        stack.push(call(cls, args));
        break;
      } // NEWOBJ
      case 0x62: {
        // BUILD: object state; kept as attributes on dicts, ignored on tensors
        const state = pop();
        const obj = top();
        if (obj instanceof PickleDict && state instanceof Map)
          for (const [k, v] of state) obj.attributes[String(k)] = v;
        break;
      }
      case 0x73: {
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      } // SETITEM
      case 0x75: {
        const items = popMark();
        setItems(top(), items);
        break;
      } // SETITEMS
      case 0x61: {
        const v = pop();
        const l = top();
        if (!Array.isArray(l)) throw bad('APPEND to a non-list');
        l.push(v);
        break;
      } // APPEND
      case 0x65: {
        const items = popMark();
        const l = top();
        if (!Array.isArray(l)) throw bad('APPENDS to a non-list');
        l.push(...items);
        break;
      } // APPENDS
      case 0x51:
        stack.push(hooks.persistentLoad(pop()));
        break; // BINPERSID
      default:
        throw bad(
          `the pickle uses opcode 0x${op.toString(16)} at byte ${pos - 1}, which a PyTorch state dict does not need`,
        );
    }
  }
}
