// TurboJPEG decoding (native/jpeg.cc), typed: a JPEG's header, and its pixels after a crop-and-resize plan, as
// uint8 HWC. Present only when the addon was built with libturbojpeg0-dev's header (jpegAvailable).
import { native, JpegDecodeOptions, JpegDecoded, JpegHeader } from './binding';

export type { JpegDecodeOptions, JpegDecoded, JpegHeader };

/** Whether this addon decodes JPEGs itself (built with turbojpeg.h). Loads the addon. */
export function jpegAvailable(): boolean {
  const n = native();
  return (
    typeof n.jpegDecode === 'function' && typeof n.jpegDecodeAsync === 'function' && typeof n.jpegHeader === 'function'
  );
}

/** Size, colour space and EXIF orientation from the header alone; throws on a header TurboJPEG cannot read. */
export function jpegHeader(bytes: Uint8Array): JpegHeader {
  return native().jpegHeader!(bytes);
}

/** Decodes and applies the plan; throws (an EngineError) on data TurboJPEG cannot decode cleanly. */
export function jpegDecode(bytes: Uint8Array, options: JpegDecodeOptions): JpegDecoded {
  return native().jpegDecode!(bytes, options);
}

/** jpegDecode on libuv's thread pool, for the JS thread of a server: it is not held while the image decodes. */
export function jpegDecodeAsync(bytes: Uint8Array, options: JpegDecodeOptions): Promise<JpegDecoded> {
  return native().jpegDecodeAsync!(bytes, options);
}
