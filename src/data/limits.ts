// Limits on what an image may be, shared by the decoders (image.ts: sharp; jpeg.ts: libjpeg-turbo).

/** Refuse images with more pixels than this (image bombs): checked from the header, before decoding. */
export const MAX_PIXELS = 100_000_000;
