// JPEG decoding for the photo pipeline with libjpeg-turbo's TurboJPEG API (Debian: libturbojpeg0-dev), and the
// geometry that follows it on uint8 pixels: crop and antialiased bilinear resize with torchvision's weights
// (resize(antialias=True), i.e. PyTorch's _upsample_bilinear2d_aa and PIL's BILINEAR), to interleaved HWC.
//
// When the resize shrinks the image by 2, 4 or 8 or more, the decoder's DCT-domain scaling produces the smaller
// image directly (as torchvision's and DALI's decoders can): the scaled image is still at least the output's
// resolution, and the resize then works on fewer pixels. Only the rows and columns the crops read are decoded (rows
// below them are never read) when libjpeg's API is there. Flips are made by the resize's weights; the
// normalisation, when asked for, on each output pixel (float output), else in the engine on the batch.
//
// Files this does not take (CMYK, EXIF-rotated: jpegHeader says which) and files it fails on stay with sharp:
// the TypeScript side falls back, so a file sharp can read never fails here. Without turbojpeg.h at build time
// the exports are absent and every JPEG goes through sharp.
#include "common.h"

#if __has_include(<turbojpeg.h>) && !defined(ALEXNET_NO_TURBOJPEG)
#include <turbojpeg.h>

// libjpeg's own API (Debian: libjpeg62-turbo-dev, the same library TurboJPEG wraps) decodes just the rows and
// columns a crop reads; without its header every JPEG is decoded whole.
#if __has_include(<jpeglib.h>) && !defined(ALEXNET_NO_JPEGLIB)
#include <csetjmp>
#include <cstdio>  // jpeglib.h needs FILE and size_t declared first

#include <jpeglib.h>
#define ALEXNET_JPEG_REGION 1
#endif

#include <chrono>
#include <cmath>
#include <cstring>

namespace alexnet {

namespace {

// One decompressor per thread (decode workers are threads), freed when the thread ends.
struct Decompressor {
  tjhandle h = tjInitDecompress();
  ~Decompressor() {
    if (h) tjDestroy(h);
  }
};

tjhandle Handle() {
  thread_local Decompressor d;
  if (!d.h) throw std::runtime_error("TurboJPEG could not start a decompressor");
  return d.h;
}

std::pair<const uint8_t*, size_t> Bytes(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsTypedArray())
    throw ArgError("argument " + std::to_string(i) + " must be a Uint8Array");
  auto a = info[i].As<Napi::Uint8Array>();
  return {a.Data(), a.ByteLength()};
}

uint32_t Read(const uint8_t* p, int bytes, bool le) {
  uint32_t v = 0;
  for (int k = 0; k < bytes; k++) v |= uint32_t(p[le ? k : bytes - 1 - k]) << (8 * k);
  return v;
}

// The EXIF orientation tag (1–8) of a JPEG's APP1 segment; 1 when there is none or it cannot be read.
int ExifOrientation(const uint8_t* p, size_t n) {
  if (n < 4 || p[0] != 0xFF || p[1] != 0xD8) return 1;
  size_t i = 2;
  while (i + 4 <= n) {
    if (p[i] != 0xFF) return 1;
    uint8_t marker = p[i + 1];
    if (marker == 0xFF) {
      i++;
      continue;
    }
    if (marker == 0xDA || marker == 0xD9) return 1;  // image data: no more metadata segments
    size_t len = (size_t(p[i + 2]) << 8) | p[i + 3];
    if (len < 2 || i + 2 + len > n) return 1;
    const uint8_t* seg = p + i + 4;
    size_t segLen = len - 2;
    if (marker == 0xE1 && segLen >= 14 && std::memcmp(seg, "Exif\0\0", 6) == 0) {
      const uint8_t* tiff = seg + 6;
      size_t tn = segLen - 6;
      bool le = tiff[0] == 'I' && tiff[1] == 'I';
      if (!le && !(tiff[0] == 'M' && tiff[1] == 'M')) return 1;
      size_t ifd = Read(tiff + 4, 4, le);
      if (ifd + 2 > tn) return 1;
      size_t count = Read(tiff + ifd, 2, le);
      for (size_t e = 0; e < count && ifd + 2 + 12 * (e + 1) <= tn; e++) {
        const uint8_t* entry = tiff + ifd + 2 + 12 * e;
        if (Read(entry, 2, le) == 0x0112) {
          int v = int(Read(entry + 8, 2, le));
          return v >= 1 && v <= 8 ? v : 1;
        }
      }
      return 1;
    }
    i += 2 + len;
  }
  return 1;
}

const char* ColorspaceName(int cs) {
  switch (cs) {
    case TJCS_RGB: return "rgb";
    case TJCS_YCbCr: return "ycbcr";
    case TJCS_GRAY: return "gray";
    case TJCS_CMYK: return "cmyk";
    case TJCS_YCCK: return "ycck";
    default: return "unknown";
  }
}

struct Header {
  int width, height, subsamp, colorspace;
};

Header ReadHeader(const uint8_t* data, size_t n) {
  Header h{};
  if (tjDecompressHeader3(Handle(), data, static_cast<unsigned long>(n), &h.width, &h.height, &h.subsamp,
                          &h.colorspace) != 0)
    throw std::runtime_error(std::string("not a readable JPEG header (") + tjGetErrorStr2(Handle()) + ")");
  return h;
}

// jpegHeader(bytes) -> { width, height, colorspace, orientation }: the header alone, nothing decoded.
Napi::Value JpegHeader(const Napi::CallbackInfo& info) {
  auto [data, n] = Bytes(info, 0);
  Header h = ReadHeader(data, n);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("width", h.width);
  o.Set("height", h.height);
  o.Set("colorspace", ColorspaceName(h.colorspace));
  o.Set("orientation", ExifOrientation(data, n));
  return o;
}

// One axis of a resample: source pixels [lo, lo + len) (fractional after DCT scaling) of an image `size` long,
// resized to `dst`, of which outputs [first, first + count) are wanted. Each output's taps: start, length and
// normalised weights (torchvision's antialiased triangle filter; its support widens with the downscale).
struct Axis {
  std::vector<int> start, taps;
  std::vector<float> w;
  int stride = 0;      // weights per output
  int lo = 0, hi = 0;  // the source pixels any output reads
};

Axis MakeAxis(double lo, double len, int size, int dst, int first, int count) {
  Axis a;
  const double scale = len / dst;
  const double support = scale >= 1 ? scale : 1.0;
  const double inv = scale >= 1 ? 1 / scale : 1.0;
  const int lower = static_cast<int>(std::floor(lo));
  const int upper = std::min(size, static_cast<int>(std::ceil(lo + len - 1e-9)));
  a.stride = static_cast<int>(std::ceil(support)) * 2 + 1;
  a.start.resize(count);
  a.taps.resize(count);
  a.w.assign(size_t(count) * a.stride, 0.f);
  a.lo = size;
  a.hi = 0;
  for (int i = 0; i < count; i++) {
    const double c = lo + scale * (first + i + 0.5);
    int x0 = std::max(static_cast<int>(std::floor(c - support + 0.5)), lower);
    int x1 = std::min(static_cast<int>(std::floor(c + support + 0.5)), upper);
    x1 = std::min(x1, x0 + a.stride);
    double total = 0;
    std::vector<double> wk(size_t(std::max(0, x1 - x0)) + 1);
    for (int j = x0; j < x1; j++) {
      double d = std::fabs((j - c + 0.5) * inv);
      wk[j - x0] = d < 1 ? 1 - d : 0;
      total += wk[j - x0];
    }
    a.start[i] = x0;
    a.taps[i] = std::max(0, x1 - x0);
    for (int j = x0; j < x1; j++) a.w[size_t(i) * a.stride + (j - x0)] = float(total > 0 ? wk[j - x0] / total : 0);
    a.lo = std::min(a.lo, x0);
    a.hi = std::max(a.hi, x1);
  }
  return a;
}

// A row of floats for the vertical pass, kept per thread.
float* AccRow(size_t n) {
  thread_local std::vector<float> acc;
  acc.resize(n);
  return acc.data();
}

// The horizontal flip of an axis' outputs (output i reads what output count − 1 − i did): mirrored crops for free.
void Mirror(Axis& a) {
  const size_t n = a.start.size();
  for (size_t i = 0; i < n / 2; i++) {
    const size_t j = n - 1 - i;
    std::swap(a.start[i], a.start[j]);
    std::swap(a.taps[i], a.taps[j]);
    std::swap_ranges(a.w.begin() + i * a.stride, a.w.begin() + (i + 1) * a.stride, a.w.begin() + j * a.stride);
  }
}

// Resamples `src` (w × h × ch, interleaved) along `ax` (columns) and `ay` (rows) into `out` (ay outputs rows of
// ax outputs), rounding half to even and clamping, as torchvision does when it casts back to uint8. With `affine`
// (ch scales, then ch biases) `out` is float: each rounded pixel v becomes v · scale[c] + bias[c], the batch's
// to-float and normalisation (finishBatch's formula) done here, where the pixel is already in the cache.
// The decoded pixels: a `width` × `height` window of the (scaled) image whose top-left pixel is (left, top).
struct Region {
  int left, top, width, height;
};

void Resample(const uint8_t* src, const Region& r, int ch, const Axis& ax, const Axis& ay, void* out,
              const float* affine) {
  const int ow = static_cast<int>(ax.start.size());
  const int oh = static_cast<int>(ay.start.size());
  const int rows = ay.hi - ay.lo;
  thread_local std::vector<float> tmp;
  tmp.resize(size_t(std::max(rows, 0)) * ow * ch);
  const size_t rowFloats = size_t(ow) * ch;
  for (int y = ay.lo; y < ay.hi; y++) {
    const uint8_t* s = src + size_t(y - r.top) * r.width * ch;
    float* t = tmp.data() + size_t(y - ay.lo) * rowFloats;
    for (int x = 0; x < ow; x++) {
      const float* wt = ax.w.data() + size_t(x) * ax.stride;
      const uint8_t* p = s + size_t(ax.start[x] - r.left) * ch;
      const int n = ax.taps[x];
      if (ch == 3) {
        float r = 0, g = 0, b = 0;
        for (int k = 0; k < n; k++, p += 3) {
          r += wt[k] * p[0];
          g += wt[k] * p[1];
          b += wt[k] * p[2];
        }
        t[3 * x] = r;
        t[3 * x + 1] = g;
        t[3 * x + 2] = b;
      } else {
        for (int c = 0; c < ch; c++) {
          float v = 0;
          for (int k = 0; k < n; k++) v += wt[k] * p[k * ch + c];
          t[ch * x + c] = v;
        }
      }
    }
  }
  float* __restrict__ acc = AccRow(rowFloats);
  // The affine's scale and bias spread along a row (period ch), so the row's last loop is one vectorisable pass.
  thread_local std::vector<float> rowScale, rowBias;
  if (affine) {
    rowScale.resize(rowFloats);
    rowBias.resize(rowFloats);
    for (size_t i = 0; i < rowFloats; i++) {
      rowScale[i] = affine[i % ch];
      rowBias[i] = affine[ch + i % ch];
    }
  }
  for (int y = 0; y < oh; y++) {
    const float* wt = ay.w.data() + size_t(y) * ay.stride;
    const float* first = tmp.data() + size_t(ay.start[y] - ay.lo) * rowFloats;
    for (size_t i = 0; i < rowFloats; i++) acc[i] = wt[0] * first[i];
    for (int k = 1; k < ay.taps[y]; k++) {
      const float* __restrict__ t = first + size_t(k) * rowFloats;
      const float wk = wt[k];
      for (size_t i = 0; i < rowFloats; i++) acc[i] += wk * t[i];
    }
    // Clamped, then rounded half to even by the float adder itself (2^23 + 2^22 leaves no fraction bits): what
    // nearbyint does in the default rounding mode, without a library call per pixel on baseline x86-64.
    if (!affine) {
      uint8_t* __restrict__ o = static_cast<uint8_t*>(out) + size_t(y) * rowFloats;
      for (size_t i = 0; i < rowFloats; i++) {
        const float v = std::min(255.f, std::max(0.f, acc[i]));
        o[i] = uint8_t(int((v + 12582912.f) - 12582912.f));
      }
    } else {
      float* __restrict__ o = static_cast<float*>(out) + size_t(y) * rowFloats;
      const float* __restrict__ sc = rowScale.data();
      const float* __restrict__ bi = rowBias.data();
      for (size_t i = 0; i < rowFloats; i++) {
        const float v = std::min(255.f, std::max(0.f, acc[i]));
        // Two roundings, multiply then add, as the engine's mul and add make them (the addon is built for
        // baseline x86-64, without FMA, so the compiler cannot fuse them).
        const float scaled = ((v + 12582912.f) - 12582912.f) * sc[i];
        o[i] = scaled + bi[i];
      }
    }
  }
}

struct Crop {
  int left, top, width, height;
};

// The largest DCT scaling 1/k (k in 8, 4, 2) after which every crop's source region is still at least as large as
// what it is resized to, on both axes; 1 when none is.
int ChooseDenominator(const std::vector<std::pair<double, double>>& ratios) {
  for (int k : {8, 4, 2}) {
    bool ok = true;
    for (auto [rx, ry] : ratios) ok = ok && rx >= k && ry >= k;
    if (ok) return k;
  }
  return 1;
}

#ifdef ALEXNET_JPEG_REGION
// libjpeg reports errors by calling error_exit, which must not return: it jumps back to DecodeRegion. Warnings
// (corrupt or truncated data) end the decode too, as TurboJPEG's do for us: the caller then decodes the whole image,
// which fails the same way, and sharp reports it.
struct JumpErrors {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
};

void JumpOnError(j_common_ptr c) { std::longjmp(reinterpret_cast<JumpErrors*>(c->err)->jump, 1); }

void JumpOnWarning(j_common_ptr c, int level) {
  if (level < 0) std::longjmp(reinterpret_cast<JumpErrors*>(c->err)->jump, 1);
}

// Whether the data ends with the end-of-image marker: only then is a decode that stops early safe, since a file cut
// short below the crop would otherwise pass unnoticed in one epoch and fail in another.
// Pixels decoded beyond the crops' rows and columns on each side: the chroma upsampling reads neighbours, and with
// this margin the crops' pixels are the whole decode's (4:2:0 needed 1 in the tests; they check it bit for bit).
constexpr int kMargin = 8;

bool EndsWithEoi(const uint8_t* data, size_t n) { return n >= 4 && data[n - 2] == 0xFF && data[n - 1] == 0xD9; }

// Decodes the columns [x0, x1) and rows [y0, y1) of the image scaled by 1/k (libjpeg widens the columns to its
// block boundaries) into `pixels`: the rows above are skipped without the inverse DCT, the rows below never read,
// the columns outside never transformed. Pixels equal the whole decode's (libjpeg-turbo's jpeg_crop_scanline and
// jpeg_skip_scanlines keep the upsampling's context). false when libjpeg fails or the sizes disagree with the header's;
// the caller then decodes the whole image.
bool DecodeRegion(const uint8_t* data, size_t n, int k, bool fastDct, int channels, int sw, int sh, int x0, int y0,
                  int x1, int y1, std::vector<uint8_t>& pixels, Region& region) {
  jpeg_decompress_struct cinfo;
  JumpErrors errors;
  cinfo.err = jpeg_std_error(&errors.pub);
  errors.pub.error_exit = JumpOnError;
  errors.pub.emit_message = JumpOnWarning;
  jpeg_create_decompress(&cinfo);
  // Nothing below this line owns memory outside cinfo, so the jump skips no destructor.
  if (setjmp(errors.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(n));
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
  cinfo.scale_num = 1;
  cinfo.scale_denom = k;
  cinfo.dct_method = fastDct ? JDCT_IFAST : JDCT_ISLOW;
  jpeg_start_decompress(&cinfo);
  if (int(cinfo.output_width) != sw || int(cinfo.output_height) != sh || cinfo.output_components != channels) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  JDIMENSION left = x0, width = x1 - x0;
  if (x0 > 0 || x1 < sw) jpeg_crop_scanline(&cinfo, &left, &width);
  else left = 0, width = sw;
  if (y0 > 0 && jpeg_skip_scanlines(&cinfo, y0) != JDIMENSION(y0)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  region = {int(left), y0, int(width), y1 - y0};
  pixels.resize(size_t(width) * (y1 - y0) * channels);
  while (int(cinfo.output_scanline) < y1) {
    JSAMPROW row = pixels.data() + size_t(cinfo.output_scanline - y0) * width * channels;
    if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {
      jpeg_destroy_decompress(&cinfo);
      return false;
    }
  }
  jpeg_abort_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}
#endif

int64_t Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
}

// jpegDecode(bytes, { channels, resizeW, resizeH, outW, outH, crops: [left, top, width, height, ...], dctScaling,
// fastDct, flip, maxPixels, affine?, into?, regionDecode? }) -> { data: ArrayBuffer (crops × outH × outW × channels
// bytes, or floats with affine: channels scales then channels biases; `into` when it has that size), scale, region,
// decodeNs, resizeNs }; flip mirrors every crop left to right. A plan as src/data/transforms.ts makes them: resize
// the whole image to resizeW × resizeH and cut output-sized crops from it, or (no resize) cut the crops from the
// image and resize each to outW × outH.
// One decode, prepared on the JS thread (options read, header checked, axes computed, output buffer chosen) and run
// on any thread: Run touches no JS value, so jpegDecodeAsync runs it on libuv's pool.
struct DecodeJob {
  const uint8_t* data = nullptr;
  size_t n = 0;
  int channels = 3, k = 1, sw = 0, sh = 0, x0 = 0, x1 = 0, y0 = 0, y1 = 0;
  bool fastDct = false, regionDecode = true;
  std::vector<std::pair<Axis, Axis>> axes;
  std::vector<float> affine;
  uint8_t* dst = nullptr;
  size_t per = 0;
  // Results.
  bool region = false;
  int64_t decodeNs = 0, resizeNs = 0;

  void Run() {
    auto t0 = std::chrono::steady_clock::now();
    thread_local std::vector<uint8_t> pixels;
    Region r{0, 0, sw, sh};
#ifdef ALEXNET_JPEG_REGION
    if (regionDecode && x0 < x1 && y0 < y1 && (x0 > 0 || x1 < sw || y0 > 0 || y1 < sh) && EndsWithEoi(data, n))
      region = DecodeRegion(data, n, k, fastDct, channels, sw, sh, std::max(0, x0 - kMargin), std::max(0, y0 - kMargin),
                            std::min(sw, x1 + kMargin), std::min(sh, y1 + kMargin), pixels, r);
#endif
    if (!region) {
      r = {0, 0, sw, sh};
      pixels.resize(size_t(sw) * sh * channels);
      const int flags = fastDct ? TJFLAG_FASTDCT : 0;
      if (tjDecompress2(Handle(), data, static_cast<unsigned long>(n), pixels.data(), sw, 0, sh,
                        channels == 3 ? TJPF_RGB : TJPF_GRAY, flags) != 0)
        throw std::runtime_error(std::string("JPEG data could not be decoded (") + tjGetErrorStr2(Handle()) + ")");
    }
    decodeNs = Since(t0);
    auto t1 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < axes.size(); i++)
      Resample(pixels.data(), r, channels, axes[i].first, axes[i].second, dst + i * per,
               affine.empty() ? nullptr : affine.data());
    resizeNs = Since(t1);
    // A thread keeps its pixel buffer for the next image, unless one huge image made it huge.
    if (pixels.capacity() > (size_t(64) << 20)) std::vector<uint8_t>().swap(pixels);
  }
};

// Reads jpegDecode's arguments into a job whose output is `out` (the caller's `into`, or a new buffer).
DecodeJob Prepare(const Napi::CallbackInfo& info, Napi::ArrayBuffer& out) {
  auto [data, n] = Bytes(info, 0);
  Fields f(info, 1);
  DecodeJob job;
  job.data = data;
  job.n = n;
  const int channels = job.channels = static_cast<int>(f.Num("channels"));
  if (channels != 1 && channels != 3) throw ArgError("channels must be 1 or 3");
  const int resizeW = static_cast<int>(f.Num("resizeW")), resizeH = static_cast<int>(f.Num("resizeH"));
  const int outW = static_cast<int>(f.Num("outW")), outH = static_cast<int>(f.Num("outH"));
  const bool dctScaling = f.Bool("dctScaling"), flip = f.Bool("flip");
  job.fastDct = f.Bool("fastDct");
  // regionDecode (default true): decode only the rows and columns the crops read, when libjpeg's API is there.
  Napi::Value rv = info[1].As<Napi::Object>().Get("regionDecode");
  job.regionDecode = rv.IsUndefined() || rv.ToBoolean().Value();
  const double maxPixels = f.Num("maxPixels");
  Napi::Value cv = info[1].As<Napi::Object>().Get("crops");
  if (!cv.IsArray()) throw ArgError("argument 1: field 'crops' must be an array");
  Napi::Array ca = cv.As<Napi::Array>();
  if (ca.Length() == 0 || ca.Length() % 4) throw ArgError("crops must hold 4 numbers per crop");
  std::vector<Crop> crops(ca.Length() / 4);
  for (uint32_t i = 0; i < ca.Length(); i++) {
    int v = ca.Get(i).As<Napi::Number>().Int32Value();
    int* slot[] = {&crops[i / 4].left, &crops[i / 4].top, &crops[i / 4].width, &crops[i / 4].height};
    *slot[i % 4] = v;
  }
  if (outW < 1 || outH < 1 || resizeW < 1 || resizeH < 1) throw ArgError("sizes must be positive");
  Napi::Value av = info[1].As<Napi::Object>().Get("affine");
  if (!av.IsUndefined()) {
    if (!av.IsArray() || av.As<Napi::Array>().Length() != uint32_t(2 * channels))
      throw ArgError("affine must hold a scale and a bias per channel");
    for (uint32_t i = 0; i < 2 * uint32_t(channels); i++)
      job.affine.push_back(av.As<Napi::Array>().Get(i).As<Napi::Number>().FloatValue());
  }

  Header h = ReadHeader(data, n);
  if (double(h.width) * h.height > maxPixels) throw std::runtime_error("too many pixels");
  const bool resized = resizeW != h.width || resizeH != h.height;
  for (const Crop& c : crops) {
    const int limW = resized ? resizeW : h.width, limH = resized ? resizeH : h.height;
    if (c.left < 0 || c.top < 0 || c.width < 1 || c.height < 1 || c.left + c.width > limW || c.top + c.height > limH)
      throw ArgError("a crop lies outside the image");
    if (resized && (c.width != outW || c.height != outH))
      throw ArgError("a plan that resizes the image takes crops of the output size");
  }
  // Per crop and axis: (source offset, source length, destination length, first output) in full-size pixels.
  struct Span {
    double lo, len;
    int dst, first;
  };
  std::vector<std::pair<Span, Span>> spans;
  std::vector<std::pair<double, double>> ratios;
  for (const Crop& c : crops) {
    if (resized) spans.push_back({{0, double(h.width), resizeW, c.left}, {0, double(h.height), resizeH, c.top}});
    else spans.push_back({{double(c.left), double(c.width), outW, 0}, {double(c.top), double(c.height), outH, 0}});
    ratios.push_back(
        {spans.back().first.len / spans.back().first.dst, spans.back().second.len / spans.back().second.dst});
  }
  const int k = job.k = dctScaling ? ChooseDenominator(ratios) : 1;
  tjscalingfactor sf{1, k};
  const int sw = job.sw = TJSCALED(h.width, sf), sh = job.sh = TJSCALED(h.height, sf);

  // Every crop's axes first: together they say which source rows and columns any output reads.
  job.x0 = sw, job.x1 = 0, job.y0 = sh, job.y1 = 0;
  for (const auto& [x, y] : spans) {
    Axis ax = MakeAxis(x.lo / k, x.len / k, sw, x.dst, x.first, outW);
    if (flip) Mirror(ax);
    Axis ay = MakeAxis(y.lo / k, y.len / k, sh, y.dst, y.first, outH);
    job.x0 = std::min(job.x0, ax.lo), job.x1 = std::max(job.x1, ax.hi);
    job.y0 = std::min(job.y0, ay.lo), job.y1 = std::max(job.y1, ay.hi);
    job.axes.emplace_back(std::move(ax), std::move(ay));
  }

  job.per = size_t(outW) * outH * channels * (job.affine.empty() ? 1 : sizeof(float));
  // `into`: a buffer of the exact size to write to (one the caller recycles: no fresh pages to fault in and zero).
  Napi::Value iv = info[1].As<Napi::Object>().Get("into");
  out = iv.IsArrayBuffer() && iv.As<Napi::ArrayBuffer>().ByteLength() == job.per * crops.size()
            ? iv.As<Napi::ArrayBuffer>()
            : Napi::ArrayBuffer::New(info.Env(), job.per * crops.size());
  job.dst = static_cast<uint8_t*>(out.Data());
  return job;
}

Napi::Object Result(Napi::Env env, const DecodeJob& job, Napi::ArrayBuffer out) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("data", out);
  o.Set("scale", job.k);
  o.Set("region", job.region);
  o.Set("decodeNs", double(job.decodeNs));
  o.Set("resizeNs", double(job.resizeNs));
  return o;
}

Napi::Value JpegDecode(const Napi::CallbackInfo& info) {
  Napi::ArrayBuffer out;
  DecodeJob job = Prepare(info, out);
  job.Run();
  return Result(info.Env(), job, out);
}

// The same decode on libuv's pool, settling a Promise: the input's bytes and the output buffer are held by
// references until it settles, so neither is collected (or moved) while the pool thread reads and writes them.
class DecodeWorker : public Napi::AsyncWorker {
 public:
  DecodeWorker(Napi::Env env, DecodeJob job, Napi::Object input, Napi::ArrayBuffer out)
      : Napi::AsyncWorker(env, "jpegDecode"),
        deferred_(Napi::Promise::Deferred::New(env)),
        job_(std::move(job)),
        input_(Napi::Persistent(input)),
        out_(Napi::Persistent(out)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      job_.Run();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }

  void OnOK() override { deferred_.Resolve(Result(Env(), job_, out_.Value())); }

  void OnError(const Napi::Error& e) override {
    Napi::Error err = Napi::Error::New(Env(), "jpegDecodeAsync: " + e.Message());
    err.Set("op", Napi::String::New(Env(), "jpegDecodeAsync"));
    err.Set("detail", Napi::String::New(Env(), e.Message()));
    deferred_.Reject(err.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  DecodeJob job_;
  Napi::ObjectReference input_;
  Napi::Reference<Napi::ArrayBuffer> out_;
};

// jpegDecodeAsync(bytes, options) -> Promise of jpegDecode's result; argument errors and the header's are thrown
// at once, as jpegDecode throws them.
Napi::Value JpegDecodeAsync(const Napi::CallbackInfo& info) {
  Napi::ArrayBuffer out;
  DecodeJob job = Prepare(info, out);
  auto* w = new DecodeWorker(info.Env(), std::move(job), info[0].As<Napi::Object>(), out);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

void RegisterJpeg(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "jpegHeader", JpegHeader);
  Export(env, exports, "jpegDecode", JpegDecode);
  Export(env, exports, "jpegDecodeAsync", JpegDecodeAsync);
}

}  // namespace alexnet

#else

namespace alexnet {
void RegisterJpeg(Napi::Env env, Napi::Object exports) {}
}  // namespace alexnet

#endif
