#include "io/video.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tensor/error.h"
#include "tensor/ops.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/cpu.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}

namespace sdpo::video {
namespace {

// FFmpeg's own log would repeat (less clearly) what our errors say; keep it for fatal problems.
void QuietFfmpegLog() {
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_level(AV_LOG_FATAL); });
}

std::string AvError(int code) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(code, buf, sizeof(buf));
  return buf;
}

struct FormatInputDeleter {
  void operator()(AVFormatContext* c) const { avformat_close_input(&c); }
};
struct CodecContextDeleter {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct FrameDeleter {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct PacketDeleter {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct SwsDeleter {
  void operator()(SwsContext* s) const { sws_freeContext(s); }
};
using FramePtr = std::unique_ptr<AVFrame, FrameDeleter>;
using PacketPtr = std::unique_ptr<AVPacket, PacketDeleter>;
using CodecContextPtr = std::unique_ptr<AVCodecContext, CodecContextDeleter>;

FramePtr NewFrame() {
  FramePtr f(av_frame_alloc());
  SDPO_CHECK(f != nullptr, "video: out of memory allocating a frame");
  return f;
}
PacketPtr NewPacket() {
  PacketPtr p(av_packet_alloc());
  SDPO_CHECK(p != nullptr, "video: out of memory allocating a packet");
  return p;
}

void CheckFrameSize(const std::string& path, int64_t w, int64_t h, const VideoLimits& limits,
                    const char* what) {
  SDPO_CHECK(w > 0 && h > 0, path, ": ", what, " has no frame size (", w, "x", h,
             "); not a decodable video");
  SDPO_CHECK(w <= limits.max_side && h <= limits.max_side && w * h <= limits.max_frame_pixels, path,
             ": ", what, " claims frames of ", w, "x", h,
             " pixels, beyond the limit (sides <= ", limits.max_side, ", ", limits.max_frame_pixels,
             " pixels)");
}

// An opened input: demuxer, the best video stream and its decoder.
struct Input {
  std::unique_ptr<AVFormatContext, FormatInputDeleter> format;
  AVStream* stream = nullptr;
  CodecContextPtr decoder;
  VideoInfo info;
};

Input Open(const std::string& path, const VideoLimits& limits, bool with_decoder) {
  QuietFfmpegLog();
  std::error_code ec;
  SDPO_CHECK(std::filesystem::is_regular_file(path, ec), path,
             ": no such video file (or not a regular file)");
  const auto size = std::filesystem::file_size(path, ec);
  SDPO_CHECK(!ec, path, ": cannot read the file size (", ec.message(), ")");
  SDPO_CHECK(size > 0, path, ": the video file is empty (0 bytes)");
  Input in;
  AVFormatContext* raw = nullptr;
  int rc = avformat_open_input(&raw, path.c_str(), nullptr, nullptr);
  SDPO_CHECK(rc >= 0, path, ": not a video file FFmpeg can read (", AvError(rc), ")");
  in.format.reset(raw);
  rc = avformat_find_stream_info(raw, nullptr);
  SDPO_CHECK(rc >= 0, path, ": cannot read the stream information (", AvError(rc), ")");
  const int index = av_find_best_stream(raw, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  SDPO_CHECK(index >= 0, path, ": no video stream (", raw->nb_streams, " stream(s), format ",
             raw->iformat->name, ")");
  in.stream = raw->streams[index];
  const AVCodecParameters* par = in.stream->codecpar;
  CheckFrameSize(path, par->width, par->height, limits, "the header");

  VideoInfo& info = in.info;
  info.path = path;
  info.container = raw->iformat->name;
  info.codec = avcodec_get_name(par->codec_id);
  info.width = par->width;
  info.height = par->height;
  const AVRational rate =
      in.stream->avg_frame_rate.num > 0 ? in.stream->avg_frame_rate : in.stream->r_frame_rate;
  info.fps = rate.num > 0 && rate.den > 0 ? av_q2d(rate) : 0;
  if (in.stream->duration != AV_NOPTS_VALUE && in.stream->duration > 0) {
    info.duration_s = in.stream->duration * av_q2d(in.stream->time_base);
  } else if (raw->duration != AV_NOPTS_VALUE && raw->duration > 0) {
    info.duration_s = static_cast<double>(raw->duration) / AV_TIME_BASE;
  }
  info.frames = std::max<int64_t>(0, in.stream->nb_frames);

  if (!with_decoder) return in;
  const AVCodec* codec = avcodec_find_decoder(par->codec_id);
  SDPO_CHECK(codec != nullptr, path, ": no decoder for the codec '", info.codec,
             "' in this FFmpeg build");
  in.decoder.reset(avcodec_alloc_context3(codec));
  SDPO_CHECK(in.decoder != nullptr, path, ": out of memory allocating the decoder");
  rc = avcodec_parameters_to_context(in.decoder.get(), par);
  SDPO_CHECK(rc >= 0, path, ": bad codec parameters (", AvError(rc), ")");
  in.decoder->max_pixels = limits.max_frame_pixels;
  in.decoder->thread_count = 0;  // FFmpeg's choice
  rc = avcodec_open2(in.decoder.get(), codec, nullptr);
  SDPO_CHECK(rc >= 0, path, ": cannot open the ", info.codec, " decoder (", AvError(rc), ")");
  return in;
}

// Scales decoded frames to cover (out_w, out_h) and centre-crops them to 8-bit RGB.
class FrameConverter {
 public:
  FrameConverter(std::string path, int out_w, int out_h, const VideoLimits& limits)
      : path_(std::move(path)), out_w_(out_w), out_h_(out_h), limits_(limits) {}

  // Appends the converted frame (out_h * out_w * 3 bytes) to `out`.
  void Convert(const AVFrame& frame, std::vector<uint8_t>& out) {
    CheckFrameSize(path_, frame.width, frame.height, limits_, "a decoded frame");
    const int w = out_w_ > 0 ? out_w_ : frame.width, h = out_h_ > 0 ? out_h_ : frame.height;
    // The smallest size with the frame's aspect ratio that covers w x h.
    const double scale =
        std::max(static_cast<double>(w) / frame.width, static_cast<double>(h) / frame.height);
    const int sw = std::max<int>(w, static_cast<int>(std::lround(frame.width * scale)));
    const int sh = std::max<int>(h, static_cast<int>(std::lround(frame.height * scale)));
    CheckFrameSize(path_, sw, sh, limits_, "the resized frame");
    sws_.reset(sws_getCachedContext(
        sws_.release(), frame.width, frame.height, static_cast<AVPixelFormat>(frame.format), sw, sh,
        AV_PIX_FMT_RGB24, SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, nullptr, nullptr,
        nullptr));
    SDPO_CHECK(sws_ != nullptr, path_, ": cannot convert ", frame.width, "x", frame.height, " ",
               av_get_pix_fmt_name(static_cast<AVPixelFormat>(frame.format)), " to RGB");
    // The frame's YUV matrix and range (untagged: BT.601, as swscale assumes).
    const AVPixelFormat fmt = static_cast<AVPixelFormat>(frame.format);
    const bool full_range = frame.color_range == AVCOL_RANGE_JPEG || fmt == AV_PIX_FMT_YUVJ420P ||
                            fmt == AV_PIX_FMT_YUVJ422P || fmt == AV_PIX_FMT_YUVJ444P;
    const int colorspace =
        frame.colorspace == AVCOL_SPC_UNSPECIFIED ? SWS_CS_DEFAULT : frame.colorspace;
    sws_setColorspaceDetails(sws_.get(), sws_getCoefficients(colorspace), full_range ? 1 : 0,
                             sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16);
    scaled_.resize(static_cast<size_t>(sw) * sh * 3);
    uint8_t* dst[4] = {scaled_.data(), nullptr, nullptr, nullptr};
    int dst_stride[4] = {sw * 3, 0, 0, 0};
    const int rows =
        sws_scale(sws_.get(), frame.data, frame.linesize, 0, frame.height, dst, dst_stride);
    SDPO_CHECK(rows == sh, path_, ": scaling a frame to ", sw, "x", sh, " failed");
    const int x0 = (sw - w) / 2, y0 = (sh - h) / 2;
    for (int y = 0; y < h; ++y) {
      const uint8_t* row = &scaled_[(static_cast<size_t>(y0 + y) * sw + x0) * 3];
      out.insert(out.end(), row, row + static_cast<size_t>(w) * 3);
    }
    width_ = w;
    height_ = h;
  }
  int width() const { return width_; }
  int height() const { return height_; }

 private:
  std::string path_;
  int out_w_, out_h_;
  VideoLimits limits_;
  std::unique_ptr<SwsContext, SwsDeleter> sws_;
  std::vector<uint8_t> scaled_;
  int width_ = 0, height_ = 0;
};

// How long a decoded frame is shown, in stream time base units (0 when unknown).
int64_t FrameDuration(const AVFrame& frame) {
#if LIBAVUTIL_VERSION_INT >= AV_VERSION_INT(57, 30, 100)
  return frame.duration;
#else
  return frame.pkt_duration;
#endif
}

// Contiguous f32 CPU copy of a video [3, T, H, W] (or the tensor itself when it already is).
Tensor CheckedVideo(const Tensor& video, const char* what) {
  SDPO_CHECK(video.defined() && video.dim() == 4 && video.size(0) == 3, what,
             ": expected a video [3, T, H, W], got ", video.defined() ? video.str() : "undefined");
  SDPO_CHECK(IsFloating(video.dtype()), what, ": the video must be floating, got ", video.str());
  SDPO_CHECK(video.size(1) > 0 && video.size(2) > 0 && video.size(3) > 0, what,
             ": the video is empty: ", video.str());
  return ops::Contiguous(ops::Cast(ops::To(video, Device::CPU()), kF32));
}

uint8_t ToByte(float v) {
  const float x = (v + 1.0f) * 127.5f;
  return static_cast<uint8_t>(std::isfinite(x) ? std::lround(std::clamp(x, 0.0f, 255.0f)) : 0);
}

// Frame t of a contiguous f32 [3, T, H, W] into RGB24 rows of `stride` bytes, padding to (pad_w,
// pad_h) by repeating the last column and row.
void FrameToRgb(const Tensor& v, int64_t t, int pad_w, int pad_h, uint8_t* dst, int stride) {
  const int64_t T = v.size(1), H = v.size(2), W = v.size(3);
  const float* x = v.data<float>();
  for (int y = 0; y < pad_h; ++y) {
    const int64_t sy = std::min<int64_t>(y, H - 1);
    uint8_t* row = dst + static_cast<size_t>(y) * stride;
    for (int xx = 0; xx < pad_w; ++xx) {
      const int64_t sx = std::min<int64_t>(xx, W - 1);
      for (int c = 0; c < 3; ++c) row[xx * 3 + c] = ToByte(x[((c * T + t) * H + sy) * W + sx]);
    }
  }
}

std::string TempPathFor(const std::string& path) {
  static std::atomic<int> counter{0};
  return absl::StrCat(path, ".tmp.", ::getpid(), ".", counter++);
}

// Encoders WriteMp4 tries, in order: H.264 in software, then MPEG-4 part 2 (every FFmpeg build has
// it). Hardware H.264 encoders (nvenc, vaapi, ...) are not tried: they are listed in builds that
// cannot open them without the device.
const char* const kMp4Encoders[] = {"libx264", "libopenh264", "mpeg4"};

struct OutputDeleter {
  void operator()(AVFormatContext* c) const {
    if (c->pb != nullptr) avio_closep(&c->pb);
    avformat_free_context(c);
  }
};

// Sends `frame` (nullptr: flush) and writes every packet the encoder returns.
void EncodeAndWrite(const std::string& path, AVCodecContext* enc, AVFormatContext* oc, AVStream* st,
                    const AVFrame* frame, AVPacket* pkt) {
  int rc = avcodec_send_frame(enc, frame);
  SDPO_CHECK(rc >= 0, path, ": encoding failed (", AvError(rc), ")");
  while (true) {
    rc = avcodec_receive_packet(enc, pkt);
    if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return;
    SDPO_CHECK(rc >= 0, path, ": encoding failed (", AvError(rc), ")");
    av_packet_rescale_ts(pkt, enc->time_base, st->time_base);
    pkt->stream_index = st->index;
    rc = av_interleaved_write_frame(oc, pkt);
    SDPO_CHECK(rc >= 0, path, ": writing a packet failed (", AvError(rc), ")");
  }
}

// Opens `name` for w x h yuv420p at `fps`; nullptr when the build lacks it or it does not open.
CodecContextPtr OpenEncoder(const char* name, int w, int h, double fps, int crf,
                            bool global_header) {
  const AVCodec* codec = avcodec_find_encoder_by_name(name);
  if (codec == nullptr) return nullptr;
  CodecContextPtr c(avcodec_alloc_context3(codec));
  if (c == nullptr) return nullptr;
  const AVRational rate = av_d2q(fps, 100000);
  c->width = w;
  c->height = h;
  c->pix_fmt = AV_PIX_FMT_YUV420P;
  c->time_base = av_inv_q(rate);
  c->framerate = rate;
  c->color_primaries = AVCOL_PRI_BT709;
  c->color_trc = AVCOL_TRC_BT709;
  c->colorspace = AVCOL_SPC_BT709;
  c->color_range = AVCOL_RANGE_MPEG;
  if (global_header) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  AVDictionary* opts = nullptr;
  const std::string encoder = name;
  if (encoder == "libx264") {
    av_dict_set(&opts, "crf", absl::StrCat(crf).c_str(), 0);
    av_dict_set(&opts, "preset", "medium", 0);
#if defined(__x86_64__) || defined(__i386__)
    // libx264 (0.164) reads memory it never wrote in its AVX-512 kernels (the macroblock-tree
    // rate control: no-mbtree or asm=AVX2 end it): the same frames gave one of two files from
    // run to run, by what the heap held. Every AVX-512 CPU has AVX2, so ask for those kernels.
    if (av_get_cpu_flags() & AV_CPU_FLAG_AVX512) av_dict_set(&opts, "x264-params", "asm=AVX2", 0);
#endif
  } else if (encoder == "mpeg4") {
    c->flags |= AV_CODEC_FLAG_QSCALE;
    c->global_quality = FF_QP2LAMBDA * 2;  // qscale 2: near the codec's best
  } else {
    c->bit_rate = std::max<int64_t>(2000000, static_cast<int64_t>(w) * h * fps / 4);
  }
  const int rc = avcodec_open2(c.get(), codec, &opts);
  av_dict_free(&opts);
  if (rc < 0) return nullptr;
  return c;
}

// The frames come from `fill(t, w, h, rgb)`, which writes frame t (padded to w x h) as RGB24 rows
// of 3 w bytes.
using FrameFiller = std::function<void(int64_t t, int w, int h, uint8_t* rgb)>;

WriteResult WriteMp4Frames(const std::string& path, int64_t T, int64_t H, int64_t W,
                           const FrameFiller& fill, const WriteOptions& options) {
  QuietFfmpegLog();
  SDPO_CHECK(options.fps > 0 && options.fps <= 1000, path, ": fps must be in (0, 1000], got ",
             options.fps);
  SDPO_CHECK(H <= 16384 && W <= 16384, path, ": frames of ", W, "x", H, " are too large to encode");
  const int w = static_cast<int>((W + 1) / 2 * 2), h = static_cast<int>((H + 1) / 2 * 2);

  const std::string tmp = TempPathFor(path);
  AVFormatContext* raw = nullptr;
  int rc = avformat_alloc_output_context2(&raw, nullptr, "mp4", tmp.c_str());
  SDPO_CHECK(rc >= 0 && raw != nullptr, path, ": cannot create an mp4 muxer (", AvError(rc), ")");
  std::unique_ptr<AVFormatContext, OutputDeleter> oc(raw);
  const bool global_header = (oc->oformat->flags & AVFMT_GLOBALHEADER) != 0;

  CodecContextPtr enc;
  std::vector<std::string> tried;
  if (!options.encoder.empty()) {
    enc = OpenEncoder(options.encoder.c_str(), w, h, options.fps, options.crf, global_header);
    SDPO_CHECK(enc != nullptr, path, ": the encoder '", options.encoder,
               "' is not in this FFmpeg build or does not open");
  } else {
    for (const char* name : kMp4Encoders) {
      enc = OpenEncoder(name, w, h, options.fps, options.crf, global_header);
      if (enc != nullptr) break;
      tried.push_back(name);
    }
    SDPO_CHECK(enc != nullptr, path, ": no usable mp4 video encoder in this FFmpeg build (tried ",
               absl::StrJoin(tried, ", "), ")");
  }
  AVStream* st = avformat_new_stream(oc.get(), nullptr);
  SDPO_CHECK(st != nullptr, path, ": cannot add a stream");
  rc = avcodec_parameters_from_context(st->codecpar, enc.get());
  SDPO_CHECK(rc >= 0, path, ": codec parameters (", AvError(rc), ")");
  st->time_base = enc->time_base;
  st->avg_frame_rate = enc->framerate;

  rc = avio_open(&oc->pb, tmp.c_str(), AVIO_FLAG_WRITE);
  SDPO_CHECK(rc >= 0, path, ": cannot open ", tmp, " for writing (", AvError(rc), ")");
  bool committed = false;
  struct RemoveTemp {
    const std::string& tmp;
    const bool& committed;
    ~RemoveTemp() {
      if (!committed) std::remove(tmp.c_str());
    }
  } remove_temp{tmp, committed};

  AVDictionary* mux_opts = nullptr;
  av_dict_set(&mux_opts, "movflags", "+faststart",
              0);  // index first: playable while loading
  rc = avformat_write_header(oc.get(), &mux_opts);
  av_dict_free(&mux_opts);
  SDPO_CHECK(rc >= 0, path, ": cannot write the mp4 header (", AvError(rc), ")");

  std::unique_ptr<SwsContext, SwsDeleter> sws(sws_getContext(
      w, h, AV_PIX_FMT_RGB24, w, h, AV_PIX_FMT_YUV420P,
      SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP, nullptr, nullptr, nullptr));
  SDPO_CHECK(sws != nullptr, path, ": cannot create the RGB -> yuv420p converter");
  sws_setColorspaceDetails(sws.get(), sws_getCoefficients(SWS_CS_ITU709), 1,
                           sws_getCoefficients(SWS_CS_ITU709), 0, 0, 1 << 16, 1 << 16);
  FramePtr yuv = NewFrame();
  yuv->format = AV_PIX_FMT_YUV420P;
  yuv->width = w;
  yuv->height = h;
  yuv->color_primaries = AVCOL_PRI_BT709;
  yuv->color_trc = AVCOL_TRC_BT709;
  yuv->colorspace = AVCOL_SPC_BT709;
  yuv->color_range = AVCOL_RANGE_MPEG;
  rc = av_frame_get_buffer(yuv.get(), 0);
  SDPO_CHECK(rc >= 0, path, ": cannot allocate a frame (", AvError(rc), ")");
  // swscale's SIMD RGB24 readers load whole vectors and so read past the end of the last row
  // (valgrind: a 16-byte load 12 bytes before the end of a 32x32 frame); zero padding keeps that
  // read inside the buffer.
  std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3 + AV_INPUT_BUFFER_PADDING_SIZE);
  PacketPtr pkt = NewPacket();
  for (int64_t t = 0; t < T; ++t) {
    fill(t, w, h, rgb.data());
    rc = av_frame_make_writable(yuv.get());
    SDPO_CHECK(rc >= 0, path, ": frame not writable (", AvError(rc), ")");
    const uint8_t* src[4] = {rgb.data(), nullptr, nullptr, nullptr};
    const int src_stride[4] = {w * 3, 0, 0, 0};
    sws_scale(sws.get(), src, src_stride, 0, h, yuv->data, yuv->linesize);
    yuv->pts = t;
    EncodeAndWrite(path, enc.get(), oc.get(), st, yuv.get(), pkt.get());
  }
  EncodeAndWrite(path, enc.get(), oc.get(), st, nullptr, pkt.get());
  rc = av_write_trailer(oc.get());
  SDPO_CHECK(rc >= 0, path, ": cannot finish the mp4 (", AvError(rc), ")");
  rc = avio_closep(&oc->pb);
  SDPO_CHECK(rc >= 0, path, ": closing ", tmp, " failed (", AvError(rc), ")");
  SDPO_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, path, ": cannot rename ", tmp, " to ",
             path);
  committed = true;

  WriteResult result;
  result.encoder = enc->codec->name;
  result.codec = avcodec_get_name(enc->codec_id);
  result.width = w;
  result.height = h;
  result.frames = T;
  return result;
}

}  // namespace

int64_t OnePlus4k(int64_t n) { return n <= 0 ? 0 : 1 + 4 * ((n - 1) / 4); }

VideoInfo Probe(const std::string& path, const VideoLimits& limits) {
  return Open(path, limits, /*with_decoder=*/false).info;
}

Tensor ReadVideo(const std::string& path, const ReadOptions& options, VideoInfo* info_out) {
  SDPO_CHECK(
      (options.height == 0) == (options.width == 0) && options.height >= 0 && options.width >= 0,
      path,
      ": ReadOptions height and width must both be > 0 (resize + crop) "
      "or both 0, got ",
      options.height, "x", options.width);
  SDPO_CHECK(options.fps >= 0 && std::isfinite(options.fps) && options.start_s >= 0 &&
                 options.max_frames >= 0,
             path, ": ReadOptions fps, start_s and max_frames must be >= 0");
  const VideoLimits& limits = options.limits;
  if (options.height > 0) CheckFrameSize(path, options.width, options.height, limits, "the output");
  Input in = Open(path, limits, /*with_decoder=*/true);
  if (info_out != nullptr) *info_out = in.info;

  FrameConverter converter(path, options.width, options.height, limits);
  std::vector<uint8_t> pixels;  // the output frames, RGB24, one after the other
  int64_t emitted = 0, decoded = 0;
  const int64_t max_frames = options.max_frames > 0 ? options.max_frames : INT64_MAX;
  auto emit = [&](const AVFrame& frame) {
    if (emitted > 0) {
      const int64_t bytes_per_frame =
          static_cast<int64_t>(converter.width()) * converter.height() * 3;
      SDPO_CHECK((emitted + 1) * bytes_per_frame * static_cast<int64_t>(sizeof(float)) <=
                     limits.max_output_bytes,
                 path, ": ", emitted + 1, " frames of ", converter.width(), "x", converter.height(),
                 " exceed the output limit of ", limits.max_output_bytes,
                 " bytes (set max_frames)");
    }
    converter.Convert(frame, pixels);
    ++emitted;
  };

  // Timestamps in seconds from the first frame; frames without one follow the previous by one frame
  // period of the stream.
  const double time_base = av_q2d(in.stream->time_base);
  const double period = in.info.fps > 0 ? 1.0 / in.info.fps : 1.0 / 25;
  const double eps = options.fps > 0 ? 1e-3 / options.fps : 0;
  bool have_first = false;
  double first_ts = 0, held_t = 0, held_duration = period;
  FramePtr held = NewFrame(), frame = NewFrame();
  bool have_held = false;
  auto next_time = [&] { return options.start_s + static_cast<double>(emitted) / options.fps; };
  // Resampled: the held frame is on screen during [held_t, until).
  auto emit_held_until = [&](double until) {
    while (have_held && emitted < max_frames && next_time() < until - eps) {
      if (next_time() + eps >= held_t) {
        emit(*held);
      } else {
        break;  // a time before this frame's (start before the first frame)
      }
    }
  };
  auto on_frame = [&](AVFrame* f) {
    ++decoded;
    double t;
    if (f->best_effort_timestamp != AV_NOPTS_VALUE) {
      t = f->best_effort_timestamp * time_base;
      if (!have_first) first_ts = t;
      t -= first_ts;
    } else {
      t = have_first ? held_t + period : 0;
    }
    have_first = true;
    if (have_held) t = std::max(t, held_t);  // never back in time
    if (options.fps == 0) {
      if (t + 1e-9 >= options.start_s && emitted < max_frames) emit(*f);
      return;
    }
    emit_held_until(t);
    av_frame_unref(held.get());
    av_frame_move_ref(held.get(), f);
    have_held = true;
    held_t = t;
    const int64_t duration = FrameDuration(*held);
    held_duration = duration > 0 ? duration * time_base : period;
  };

  PacketPtr pkt = NewPacket();
  AVCodecContext* dec = in.decoder.get();
  auto drain = [&] {
    while (emitted < max_frames) {
      const int rc = avcodec_receive_frame(dec, frame.get());
      if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return;
      SDPO_CHECK(rc >= 0, path, ": corrupt video data after ", decoded, " frame(s) (", AvError(rc),
                 ")");
      on_frame(frame.get());
      av_frame_unref(frame.get());
    }
  };
  bool eof = false;
  while (emitted < max_frames) {
    const int rc = av_read_frame(in.format.get(), pkt.get());
    if (rc == AVERROR_EOF) {
      eof = true;
      break;
    }
    SDPO_CHECK(rc >= 0, path, ": cannot read the file after ", decoded, " frame(s) (", AvError(rc),
               "); truncated or corrupt");
    if (pkt->stream_index == in.stream->index) {
      const int sent = avcodec_send_packet(dec, pkt.get());
      av_packet_unref(pkt.get());
      SDPO_CHECK(sent >= 0 || sent == AVERROR(EAGAIN), path, ": corrupt video data after ", decoded,
                 " frame(s) (", AvError(sent), ")");
      drain();
    } else {
      av_packet_unref(pkt.get());
    }
  }
  if (eof) {
    avcodec_send_packet(dec, nullptr);  // flush the decoder's delayed frames
    drain();
    // The demuxer stops at the end of the data; a file cut short has fewer frames than its header
    // lists.
    SDPO_CHECK(in.format->pb == nullptr || in.format->pb->error >= 0 ||
                   in.format->pb->error == AVERROR_EOF,
               path, ": read error after ", decoded, " frame(s) (", AvError(in.format->pb->error),
               ")");
    const bool stopped_early = emitted >= max_frames;
    SDPO_CHECK(stopped_early || in.info.frames == 0 || decoded >= in.info.frames, path,
               ": truncated: the header lists ", in.info.frames, " frames, ", decoded,
               " could be decoded");
    // The last frame stays on screen for its duration (else one frame period).
    emit_held_until(held_t + held_duration);
    if (have_held && emitted == 0 && options.start_s <= held_t + held_duration) emit(*held);
  }
  SDPO_CHECK(decoded > 0, path, ": no video frame could be decoded (empty or corrupt stream)");
  SDPO_CHECK(emitted > 0, path, ": no frame at or after start_s = ", options.start_s,
             " s (the video lasts about ", held_t + held_duration, " s)");
  int64_t frames = emitted;
  if (options.one_plus_4k) frames = OnePlus4k(frames);
  const int64_t H = converter.height(), W = converter.width(), T = frames;
  Tensor out = Tensor::Empty({3, T, H, W}, kF32);
  float* x = out.data<float>();
  for (int64_t t = 0; t < T; ++t) {
    const uint8_t* src = &pixels[static_cast<size_t>(t) * H * W * 3];
    for (int64_t p = 0; p < H * W; ++p) {
      for (int c = 0; c < 3; ++c) x[(c * T + t) * H * W + p] = src[p * 3 + c] / 127.5f - 1.0f;
    }
  }
  return out;
}

std::string DefaultMp4Encoder() {
  for (const char* name : kMp4Encoders) {
    if (avcodec_find_encoder_by_name(name) != nullptr) return name;
  }
  return "";
}

WriteResult WriteMp4(const std::string& path, const Tensor& video_in, const WriteOptions& options) {
  const Tensor video = CheckedVideo(video_in, absl::StrCat("WriteMp4 ", path).c_str());
  return WriteMp4Frames(
      path, video.size(1), video.size(2), video.size(3),
      [&](int64_t t, int w, int h, uint8_t* rgb) { FrameToRgb(video, t, w, h, rgb, w * 3); },
      options);
}

WriteResult WriteMp4(const std::string& path, const std::vector<image::RgbImage>& frames,
                     const WriteOptions& options) {
  SDPO_CHECK(!frames.empty(), "WriteMp4 ", path, ": no frames");
  const int W = frames[0].width, H = frames[0].height;
  for (size_t i = 0; i < frames.size(); ++i) {
    SDPO_CHECK(frames[i].width == W && frames[i].height == H && W > 0 && H > 0 &&
                   frames[i].pixels.size() == static_cast<size_t>(W) * H * 3,
               "WriteMp4 ", path, ": frame ", i, " is ", frames[i].width, "x", frames[i].height,
               ", expected ", W, "x", H);
  }
  return WriteMp4Frames(
      path, static_cast<int64_t>(frames.size()), H, W,
      [&](int64_t t, int w, int h, uint8_t* rgb) {
        const image::RgbImage& f = frames[t];
        for (int y = 0; y < h; ++y) {
          for (int x = 0; x < w; ++x) {
            std::copy_n(f.at(std::min(x, W - 1), std::min(y, H - 1)), 3, rgb + (y * w + x) * 3);
          }
        }
      },
      options);
}

image::RgbImage FrameImage(const Tensor& video_in, int64_t frame) {
  const Tensor video = CheckedVideo(video_in, "FrameImage");
  SDPO_CHECK(frame >= 0 && frame < video.size(1), "FrameImage: frame ", frame, " out of range for ",
             video.str());
  const int w = static_cast<int>(video.size(3)), h = static_cast<int>(video.size(2));
  image::RgbImage img(w, h);
  FrameToRgb(video, frame, w, h, img.pixels.data(), w * 3);
  return img;
}

void WriteGif(const std::string& path, const Tensor& video_in, double fps) {
  const Tensor video = CheckedVideo(video_in, absl::StrCat("WriteGif ", path).c_str());
  SDPO_CHECK(fps > 0 && fps <= 100, path, ": GIF fps must be in (0, 100], got ", fps);
  std::vector<image::RgbImage> frames;
  for (int64_t t = 0; t < video.size(1); ++t) frames.push_back(FrameImage(video, t));
  image::WriteGif(path, frames, static_cast<int>(std::lround(100.0 / fps)));
}

void WriteContactSheet(const std::string& path, const Tensor& video_in, int columns,
                       int64_t stride) {
  const Tensor video = CheckedVideo(video_in, absl::StrCat("WriteContactSheet ", path).c_str());
  SDPO_CHECK(columns >= 0 && stride >= 0, path, ": columns and stride must be >= 0");
  const int64_t T = video.size(1);
  if (stride == 0) stride = std::max<int64_t>(1, (T + 15) / 16);
  std::vector<int64_t> picked;
  for (int64_t t = 0; t < T; t += stride) picked.push_back(t);
  const int n = static_cast<int>(picked.size());
  const int cols = columns > 0 ? std::min(columns, n)
                               : static_cast<int>(std::ceil(std::sqrt(static_cast<double>(n))));
  const int rows = (n + cols - 1) / cols;
  const int fw = static_cast<int>(video.size(3)), fh = static_cast<int>(video.size(2)), gap = 2;
  SDPO_CHECK(static_cast<int64_t>(cols) * (fw + gap) * rows * (fh + gap) <= (1LL << 28), path,
             ": a contact sheet of ", rows, "x", cols, " frames of ", fw, "x", fh,
             " is too large (raise stride)");
  image::RgbImage sheet(cols * (fw + gap) + gap, rows * (fh + gap) + gap, 64);
  for (int i = 0; i < n; ++i) {
    image::Blit(FrameImage(video, picked[i]), sheet, gap + (i % cols) * (fw + gap),
                gap + (i / cols) * (fh + gap));
  }
  image::WritePng(path, sheet);
}

}  // namespace sdpo::video
