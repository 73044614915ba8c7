// Reading an ONNX file's metadata_props (field 14 of ModelProto) with a minimal protobuf scan: enough to find the
// model record that `alexnet export --format onnx` stores there, without an ONNX library.
import { FormatError } from '../errors';
import { readInputFile } from '../util/files';

/** metadata_props of an ONNX file (field 14 of ModelProto), read with a minimal protobuf scan. */
export function readOnnxMetadata(file: string): Record<string, string> {
  const buf = readInputFile(file, '--model-file');
  const out: Record<string, string> = {};
  let p = 0;
  const varint = () => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      if (p >= buf.length) throw new FormatError(`${file} is truncated`);
      const b = buf[p++];
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      shift += 7n;
    }
  };
  const fields = (end: number, visit: (field: number, start: number, len: number) => void) => {
    while (p < end) {
      const key = Number(varint());
      const field = key >> 3;
      const wire = key & 7;
      if (wire === 0) varint();
      else if (wire === 1) p += 8;
      else if (wire === 5) p += 4;
      else if (wire === 2) {
        const len = Number(varint());
        const start = p;
        visit(field, start, len);
        p = start + len;
      } else throw new FormatError(`${file}: unexpected protobuf wire type ${wire}`);
    }
  };
  fields(buf.length, (field, start, len) => {
    if (field !== 14) return;
    let k = '';
    let v = '';
    fields(start + len, (f, s, l) => {
      if (f === 1) k = buf.toString('utf8', s, s + l);
      if (f === 2) v = buf.toString('utf8', s, s + l);
    });
    out[k] = v;
  });
  return out;
}
