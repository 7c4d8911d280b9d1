// pybind11 module saliq._preproc: preprocessing version 1 (DESIGN.md) and version 2's crop
// views (docs/preprocessing.md) on the CPU twin and, when built with CUDA, on the GPU.
// Validates every input and raises ValueError/TypeError/RuntimeError with a one-line cause and
// fix; never crashes on bad input.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "preproc.h"

namespace py = pybind11;
using saliq::Source;

namespace {

// One frame's buffer as seen from Python: a numpy array, a __cuda_array_interface__ object, or
// a DLPack exporter (translated to one of the two by saliq.dlpack, which `keepalive` holds).
struct View {
  uintptr_t ptr = 0;
  std::vector<int64_t> shape, strides;  // bytes
  int itemsize = 0;                     // 1 or 2; 0 = unsupported dtype
  std::string dtype;                    // for messages
  bool device = false;
  // __cuda_array_interface__ v3 `stream`: work on the array queued there must come first.
  bool wait = false;
  uintptr_t stream = 0;
  py::object keepalive;
};

// The CUDA runtime's handle for the legacy default stream (cudaStreamLegacy).
constexpr uintptr_t kLegacyStream = 1;

View from_numpy(const py::array& a) {
  View v;
  v.ptr = reinterpret_cast<uintptr_t>(a.data());
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    v.shape.push_back(a.shape(d));
    v.strides.push_back(a.strides(d));
  }
  v.dtype = py::str(a.dtype()).cast<std::string>();
  if (a.dtype().is(py::dtype::of<uint8_t>())) v.itemsize = 1;
  if (a.dtype().is(py::dtype::of<uint16_t>())) v.itemsize = 2;
  return v;
}

View from_cai(const py::dict& cai) {
  View v;
  v.device = true;
  v.ptr = cai["data"].cast<py::tuple>()[0].cast<uintptr_t>();
  v.shape = cai["shape"].cast<std::vector<int64_t>>();
  v.dtype = cai["typestr"].cast<std::string>();
  if (v.dtype == "|u1" || v.dtype == "<u1") v.itemsize = 1;
  if (v.dtype == "<u2") v.itemsize = 2;
  // Bytes per element from the typestr ("<f4" -> 4), for every dtype, to derive strides.
  const size_t digits = v.dtype.find_first_of("0123456789");
  const int item = digits == std::string::npos ? 1 : std::stoi(v.dtype.substr(digits));
  if (cai.contains("strides") && !cai["strides"].is_none()) {
    v.strides = cai["strides"].cast<std::vector<int64_t>>();
  } else {  // C-contiguous
    v.strides.assign(v.shape.size(), item);
    for (int d = static_cast<int>(v.shape.size()) - 2; d >= 0; --d)
      v.strides[d] = v.strides[d + 1] * v.shape[d + 1];
  }
  // Version 3: None = no wait; 1 / 2 = the legacy / per-thread default stream; other ints are
  // stream handles; 0 is forbidden. No key (version 2, e.g. PyTorch's) says nothing about the
  // writer, so assume the legacy default stream, where unstreamed work goes.
  if (!cai.contains("stream")) {
    v.wait = true;
    v.stream = kLegacyStream;
  } else if (!cai["stream"].is_none()) {
    const py::object s = cai["stream"];
    if (!py::isinstance<py::int_>(s) || py::isinstance<py::bool_>(s))
      throw py::type_error("__cuda_array_interface__ 'stream' must be an int or None, got " +
                           py::str(py::type::of(s)).cast<std::string>());
    const long long handle = s.cast<long long>();
    if (handle <= 0)
      throw py::value_error("__cuda_array_interface__ 'stream' is " + std::to_string(handle) +
                            ", which version 3 forbids; the exporter should give 1 (legacy "
                            "default stream), 2 (per-thread default), a stream handle or None");
    v.wait = true;
    v.stream = static_cast<uintptr_t>(handle);
  }
  return v;
}

// `stream`: the CUDA stream the work will run on, for the DLPack handshake (0 = legacy default).
View to_view(const py::handle& h, bool allow_device, uintptr_t stream = 0) {
  if (py::isinstance<py::array>(h)) return from_numpy(py::reinterpret_borrow<py::array>(h));
  const bool dlpack = py::hasattr(h, "__dlpack__") && py::hasattr(h, "__dlpack_device__");
  if (py::hasattr(h, "__cuda_array_interface__")) {
    if (!allow_device)
      throw py::type_error(
          "frame is in GPU memory (__cuda_array_interface__); use preprocess_cuda() or copy it "
          "to the host first");
    const py::dict cai = h.attr("__cuda_array_interface__");
    // Without a `stream` key the interface cannot say which stream wrote the array; the
    // DLPack handshake can (the exporter orders its current stream before ours), so an object
    // offering both (a PyTorch tensor) goes through DLPack.
    if (cai.contains("stream") || !dlpack) return from_cai(cai);
  }
  if (dlpack) {
    const py::object adapt = py::module_::import("saliq.dlpack").attr("adapt");
    const py::object adapted = adapt(h, stream, py::arg("allow_device") = allow_device);
    View v = to_view(adapted, allow_device, stream);
    v.keepalive = adapted;
    return v;
  }
  throw py::type_error(std::string("frames must be numpy arrays") +
                       (allow_device ? ", CUDA arrays (__cuda_array_interface__)" : "") +
                       " or DLPack tensors, got " + py::str(py::type::of(h)).cast<std::string>());
}

// The distinct producer streams of `views` that `stream` (0 = legacy default) must wait for;
// its own stream needs no wait (work on one stream runs in order).
void add_producers(const std::vector<View>& views, uintptr_t stream,
                   std::vector<uintptr_t>& producers) {
  const uintptr_t self = stream ? stream : kLegacyStream;
  for (const View& v : views) {
    if (!v.wait || v.stream == self) continue;
    if (std::find(producers.begin(), producers.end(), v.stream) == producers.end())
      producers.push_back(v.stream);
  }
}

View drop_batch_axis(const View& b, int64_t i) {
  View v = b;
  v.ptr = b.ptr + static_cast<uintptr_t>(i * b.strides[0]);
  v.shape.erase(v.shape.begin());
  v.strides.erase(v.strides.begin());
  return v;
}

int parse_format(const std::string& fmt) {
  static const char* names[] = {"BGR", "RGB", "BGRA", "RGBA", "GRAY", "NV12"};
  std::string up;
  for (char c : fmt) up += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (int i = 0; i < 6; ++i)
    if (up == names[i]) return i;
  throw py::value_error("unknown pixel format '" + fmt +
                        "'; use one of BGR, RGB, BGRA, RGBA, GRAY, NV12");
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

// Checks one frame and describes it as a Source; `pitch` < 0 means "not given".
Source to_source(const View& v, int fmt, int64_t pitch, size_t index) {
  const std::string where = "frame " + std::to_string(index) + ": ";
  if (!v.itemsize)
    throw py::type_error(where + "unsupported dtype " + v.dtype +
                         "; pass uint8 or uint16 pixels (convert float images with "
                         "np.clip(x * 255, 0, 255).astype(np.uint8))");
  const int ch = saliq::format_channels(fmt);
  const auto& s = v.shape;
  const char* names[] = {"BGR", "RGB", "BGRA", "RGBA", "GRAY", "NV12"};
  bool ok;
  if (fmt == saliq::kGRAY)
    ok = s.size() == 2 || (s.size() == 3 && s[2] == 1);
  else if (fmt == saliq::kNV12)
    ok = s.size() == 2;
  else
    ok = s.size() == 3 && s[2] == ch;
  if (!ok) {
    const std::string want = fmt == saliq::kNV12   ? "(H*3/2)xW"
                             : fmt == saliq::kGRAY ? "HxW or HxWx1"
                                                   : "HxWx" + std::to_string(ch);
    throw py::value_error(where + names[fmt] + " frames must be " + want + ", got shape " +
                          shape_str(s) + "; pass fmt= matching the array");
  }
  const int64_t rows = s[0], width = s[1];
  if (rows <= 0 || width <= 0)
    throw py::value_error(where + "zero-size frame " + shape_str(s) + "; pass at least 1x1 pixels");
  int height = static_cast<int>(rows);
  if (fmt == saliq::kNV12) {
    if (rows % 3 || (rows * 2 / 3) % 2 || width % 2)
      throw py::value_error(where + "NV12 needs even width and height (a (H*3/2)xW array), got " +
                            "shape " + shape_str(s));
    height = static_cast<int>(rows * 2 / 3);
  }
  // Pixels within a row must be dense; rows may be `pitch` bytes apart.
  const int64_t item = v.itemsize;
  bool dense = s.size() == 3 ? (v.strides[2] == item || s[2] == 1) &&
                                   (v.strides[1] == item * s[2] || s[1] == 1)
                             : (v.strides[1] == item || s[1] == 1);
  if (s.size() == 3 && s[2] == 1) dense = v.strides[1] == item || s[1] == 1;
  if (!dense)
    throw py::value_error(where + "pixels within a row are not contiguous (strides " +
                          shape_str(v.strides) + "); pass np.ascontiguousarray(frame)");
  const int64_t row_bytes = width * (fmt == saliq::kNV12 ? 1 : ch) * item;
  int64_t stride = rows > 1 ? v.strides[0] : row_bytes;
  if (pitch < 0) {
    if (stride != row_bytes)
      throw py::value_error(where + "rows are not contiguous (row stride " +
                            std::to_string(stride) + " bytes, row size " +
                            std::to_string(row_bytes) + "); pass pitch=" + std::to_string(stride) +
                            " for a padded frame, or np.ascontiguousarray(frame)");
  } else {
    if (pitch < row_bytes || pitch % item)
      throw py::value_error(where + "pitch " + std::to_string(pitch) +
                            " is smaller than a row (" + std::to_string(row_bytes) +
                            " bytes) or not a multiple of the sample size");
    if (rows > 1 && stride != pitch)
      throw py::value_error(where + "pitch=" + std::to_string(pitch) +
                            " but the array's rows are " + std::to_string(stride) +
                            " bytes apart; pass a view of the padded buffer whose row stride "
                            "equals pitch");
    stride = pitch;
  }
  if (stride <= 0)
    throw py::value_error(where + "negative or zero row stride; pass np.ascontiguousarray(frame)");
  return Source{reinterpret_cast<const uint8_t*>(v.ptr), stride, height, static_cast<int>(width),
                fmt, static_cast<int>(item)};
}

// `frame_ndim`: the dimensions of one frame of the format (a batch array has one more).
std::vector<View> collect(const py::object& frames, bool allow_device, size_t frame_ndim,
                          uintptr_t stream) {
  std::vector<View> views;
  if (py::isinstance<py::list>(frames) || py::isinstance<py::tuple>(frames)) {
    for (const auto& f : frames) views.push_back(to_view(f, allow_device, stream));
    if (views.empty()) throw py::value_error("empty batch: pass at least one frame");
  } else {
    const View batch = to_view(frames, allow_device, stream);
    if (batch.shape.size() <= frame_ndim)
      throw py::value_error("a single array is a batch [N, ...], got shape " +
                            shape_str(batch.shape) + "; pass [frame] for one frame");
    if (batch.shape[0] <= 0) throw py::value_error("empty batch: pass at least one frame");
    for (int64_t i = 0; i < batch.shape[0]; ++i) views.push_back(drop_batch_axis(batch, i));
  }
  for (size_t i = 1; i < views.size(); ++i) {
    // Memory first: numpy and the interface spell one dtype differently ("uint8", "|u1").
    if (views[i].device != views[0].device)
      throw py::value_error("mismatched batch: frames mix host and GPU memory");
    if (views[i].dtype != views[0].dtype || views[i].itemsize != views[0].itemsize)
      throw py::value_error("mismatched batch: frame " + std::to_string(i) + " is " +
                            views[i].dtype + " but frame 0 is " + views[0].dtype +
                            "; pass frames of one dtype");
  }
  return views;
}

struct Call {
  std::vector<Source> sources;
  saliq::Params params;
  bool device = false;
  std::vector<uintptr_t> producers;  // streams to wait for (device frames), see add_producers
};

Call prepare(const py::object& frames, const std::string& fmt_name, int height, int width,
             const std::vector<float>& mean, const std::vector<float>& stdev,
             const std::string& dtype, const std::string& matrix, const std::string& yuv_range,
             const py::object& pitch, bool allow_device, uintptr_t stream = 0) {
  Call c;
  const int fmt = parse_format(fmt_name);
  if (height <= 0 || width <= 0 || height % 4 || width % 4)
    throw py::value_error("height and width must be positive multiples of 4 (the spec uses "
                          "multiples of 32), got " + std::to_string(height) + "x" +
                          std::to_string(width));
  if (mean.size() != 3 || stdev.size() != 3)
    throw py::value_error("mean and std need 3 values each (R, G, B)");
  for (float s : stdev)
    if (!(s != 0.f)) throw py::value_error("std values must be non-zero");
  if (dtype != "float32" && dtype != "float16")
    throw py::value_error("dtype must be 'float32' or 'float16', got '" + dtype + "'");
  if (matrix != "bt601" && matrix != "bt709")
    throw py::value_error("matrix must be 'bt601' or 'bt709', got '" + matrix + "'");
  if (yuv_range != "limited" && yuv_range != "full")
    throw py::value_error("yuv_range must be 'limited' or 'full', got '" + yuv_range + "'");
  const int64_t p = pitch.is_none() ? -1 : pitch.cast<int64_t>();
  if (!pitch.is_none() && p <= 0) throw py::value_error("pitch must be a positive byte count");
  const size_t frame_ndim = fmt == saliq::kNV12 || fmt == saliq::kGRAY ? 2 : 3;
  const auto views = collect(frames, allow_device, frame_ndim, stream);
  for (size_t i = 0; i < views.size(); ++i) c.sources.push_back(to_source(views[i], fmt, p, i));
  c.device = views[0].device;
  add_producers(views, stream, c.producers);
  c.params.out_h = height;
  c.params.out_w = width;
  for (int i = 0; i < 3; ++i) {
    c.params.mean[i] = mean[i];
    c.params.stdev[i] = stdev[i];
  }
  c.params.half = dtype == "float16";
  c.params.yuv = saliq::make_yuv_coeffs(matrix == "bt709", yuv_range == "full");
  return c;
}

py::dict allocate(const Call& c, std::vector<py::array>& arrays) {
  const py::ssize_t n = static_cast<py::ssize_t>(c.sources.size());
  const py::ssize_t h = c.params.out_h, w = c.params.out_w;
  const py::dtype dt(c.params.half ? "float16" : "float32");
  arrays = {py::array(dt, std::vector<py::ssize_t>{n, 3, h, w}),
            py::array(dt, std::vector<py::ssize_t>{n, 1, h, w}),
            py::array(dt, std::vector<py::ssize_t>{n, 1, h / 4, w / 4})};
  py::dict out;
  out["image"] = arrays[0];
  out["gradient"] = arrays[1];
  out["prior"] = arrays[2];
  return out;
}

// Version 2's `views` argument: None (version 1) or a dict of saliq.views.ViewConfig fields
// (missing ones take ViewConfig's defaults), checked by the same rules.
saliq::ViewParams parse_views(const py::object& views) {
  saliq::ViewParams v;  // detail_crops = 0: no views
  if (views.is_none()) return v;
  if (!py::isinstance<py::dict>(views))
    throw py::type_error(
        "views must be None or a dict of ViewConfig fields (ViewConfig.to_dict())");
  v.detail_crops = 4;  // ViewConfig's defaults
  const std::pair<const char*, int*> fields[] = {
      {"detail_crops", &v.detail_crops}, {"crop_size", &v.crop_size},
      {"salient_crops", &v.salient_crops}, {"grid_crops", &v.grid_crops},
      {"grid_size", &v.grid_size}, {"canonical_long_side", &v.canonical_long_side}};
  for (const auto& item : views.cast<py::dict>()) {
    const std::string key = py::str(item.first).cast<std::string>();
    int* slot = nullptr;
    for (const auto& f : fields)
      if (key == f.first) slot = f.second;
    if (!slot)
      throw py::value_error("views: unknown key '" + key + "'; known: canonical_long_side, "
                            "crop_size, detail_crops, grid_crops, grid_size, salient_crops");
    if (!py::isinstance<py::int_>(item.second) || py::isinstance<py::bool_>(item.second))
      throw py::value_error("views: '" + key + "' must be an integer");
    *slot = item.second.cast<int>();
  }
  if (v.detail_crops < 1 || v.detail_crops > 64 || v.salient_crops < 0 ||
      v.salient_crops > v.detail_crops)
    throw py::value_error("views: need 1 <= detail_crops <= 64 and 0 <= salient_crops <= "
                          "detail_crops, got " + std::to_string(v.detail_crops) + ", " +
                          std::to_string(v.salient_crops));
  if (v.grid_crops < 0 || v.grid_crops > 64)
    throw py::value_error("views: grid_crops must be in 0..64");
  if (v.crop_size < 8 || v.crop_size % 8 || v.grid_size < 8 || v.grid_size % 8)
    throw py::value_error("views: crop_size and grid_size must be multiples of 8, >= 8");
  if (v.canonical_long_side < 64)
    throw py::value_error("views: canonical_long_side must be >= 64");
  return v;
}

// Per-frame shapes of the view outputs, in the order of kViewKeys.
const char* const kViewKeys[] = {"crops", "crop_gradient", "crop_boxes",
                                 "crop_weights", "grid", "grid_boxes"};
std::vector<std::vector<py::ssize_t>> view_shapes(const saliq::ViewParams& v, py::ssize_t n) {
  const py::ssize_t k = v.detail_crops, p = v.crop_size, g = v.grid_crops, pg = v.grid_size;
  return {{n, k, 3, p, p}, {n, k, 1, p, p}, {n, k, 4}, {n, k}, {n, g, 3, pg, pg}, {n, g, 4}};
}
bool view_is_float32(int key) { return key == 2 || key == 3 || key == 5; }  // boxes, weights

// Host arrays for the view outputs, added to `out`; returns the pointers.
saliq::ViewOutputs allocate_views(const Call& c, const saliq::ViewParams& v, py::dict& out,
                                  std::vector<py::array>& arrays) {
  const auto shapes = view_shapes(v, static_cast<py::ssize_t>(c.sources.size()));
  const py::dtype dt(c.params.half ? "float16" : "float32"), f32("float32");
  for (int k = 0; k < 6; ++k) {
    arrays.push_back(py::array(view_is_float32(k) ? f32 : dt, shapes[k]));
    out[kViewKeys[k]] = arrays.back();
  }
  const size_t b = arrays.size() - 6;
  return {arrays[b].mutable_data(),
          arrays[b + 1].mutable_data(),
          static_cast<float*>(arrays[b + 2].mutable_data()),
          static_cast<float*>(arrays[b + 3].mutable_data()),
          arrays[b + 4].mutable_data(),
          static_cast<float*>(arrays[b + 5].mutable_data())};
}

#ifndef SALIQ_WITH_CUDA
const char* kNoCudaBuild =
    "saliq._preproc was built without CUDA (nvcc was not found at build time, or SALIQ_CUDA=0); "
    "reinstall with the CUDA toolkit on PATH to use the GPU";
#endif

std::string unavailable_reason() {
#ifdef SALIQ_WITH_CUDA
  return saliq::cuda_unavailable_reason();
#else
  return kNoCudaBuild;
#endif
}

uintptr_t stream_handle(const py::object& stream) {
  if (stream.is_none()) return 0;
  if (py::isinstance<py::int_>(stream)) return stream.cast<uintptr_t>();
  for (const char* attr : {"cuda_stream", "ptr", "handle"})
    if (py::hasattr(stream, attr)) return stream.attr(attr).cast<uintptr_t>();
  throw py::type_error("stream must be None, an int cudaStream_t, or a torch/CuPy stream");
}

}  // namespace

PYBIND11_MODULE(_preproc, m) {
  m.doc() = "Preprocessing versions 1 and 2 (DESIGN.md, docs/preprocessing.md): CPU twin and CUDA "
            "kernels of one definition.";
  m.attr("PREPROCESSING_VERSION") = 1;
  m.attr("PREPROCESSING_VERSIONS") = py::make_tuple(1, 2);
  m.attr("FORMATS") = py::make_tuple("BGR", "RGB", "BGRA", "RGBA", "GRAY", "NV12");

  m.def(
      "preprocess",
      [](const py::object& frames, const std::string& fmt, int height, int width,
         const std::vector<float>& mean, const std::vector<float>& stdev,
         const std::string& dtype, const std::string& matrix, const std::string& yuv_range,
         const py::object& pitch, const py::object& views) {
        const saliq::ViewParams v = parse_views(views);
        Call c = prepare(frames, fmt, height, width, mean, stdev, dtype, matrix, yuv_range, pitch,
                         false);
        std::vector<py::array> arrays;
        py::dict out = allocate(c, arrays);
        const saliq::Outputs o{arrays[0].mutable_data(), arrays[1].mutable_data(),
                               arrays[2].mutable_data()};
        const saliq::ViewOutputs vo = v.detail_crops ? allocate_views(c, v, out, arrays)
                                                     : saliq::ViewOutputs{};
        {
          py::gil_scoped_release release;
          saliq::preprocess_cpu(c.sources.data(), static_cast<int>(c.sources.size()), c.params,
                                o, v, vo);
        }
        return out;
      },
      py::arg("frames"), py::arg("fmt"), py::arg("height"), py::arg("width"),
      py::arg("mean") = std::vector<float>{0.5f, 0.5f, 0.5f},
      py::arg("std") = std::vector<float>{0.5f, 0.5f, 0.5f}, py::arg("dtype") = "float32",
      py::arg("matrix") = "bt601", py::arg("yuv_range") = "limited", py::arg("pitch") = py::none(),
      py::arg("views") = py::none(),
      R"doc(Frames -> {"image": [N,3,H,W], "gradient": [N,1,H,W], "prior": [N,1,H/4,W/4]} (CPU).

views: None (preprocessing version 1), or a dict of saliq.views.ViewConfig fields (version 2,
docs/preprocessing.md): adds "crops" [N,K,3,P,P], "crop_gradient" [N,K,1,P,P], "crop_boxes"
[N,K,4], "crop_weights" [N,K], "grid" [N,G,3,Pg,Pg] and "grid_boxes" [N,G,4] (boxes and weights
float32), placed on the float32 prior and cut from the source windows alone; the version 1
outputs are the same bits as without views.

frames: a list of uint8/uint16 arrays (sizes may differ) or one batch array [N, ...], numpy or any
host DLPack tensor (e.g. a torch CPU tensor), read without copying; each frame
HxWxC (BGR, RGB: C=3; BGRA, RGBA: C=4), HxW or HxWx1 (GRAY), (H*3/2)xW (NV12, even H and W).
pitch: bytes between rows when frames are views of a padded buffer (row stride == pitch);
without it frames must be C-contiguous. dtype: "float32" or "float16". The GIL is released.)doc");

  m.def(
      "preprocess_cuda",
      [](const py::object& frames, const std::string& fmt, int height, int width,
         const std::vector<float>& mean, const std::vector<float>& stdev,
         const std::string& dtype, const std::string& matrix, const std::string& yuv_range,
         const py::object& pitch, const py::object& stream, const py::object& out,
         const py::object& views) -> py::object {
        const std::string reason = unavailable_reason();
        if (!reason.empty()) throw std::runtime_error("CUDA preprocessing unavailable: " + reason);
#ifdef SALIQ_WITH_CUDA
        const saliq::ViewParams v = parse_views(views);
        const uintptr_t s = stream_handle(stream);
        Call c = prepare(frames, fmt, height, width, mean, stdev, dtype, matrix, yuv_range, pitch,
                         true, s);
        saliq::Outputs o{};
        saliq::ViewOutputs vo{};
        py::object result;
        std::vector<py::array> arrays;
        std::vector<View> out_views;  // their keepalives hold DLPack outputs until we return
        bool out_device = false;
        if (out.is_none()) {
          py::dict d = allocate(c, arrays);
          o = {arrays[0].mutable_data(), arrays[1].mutable_data(), arrays[2].mutable_data()};
          if (v.detail_crops) vo = allocate_views(c, v, d, arrays);
          result = d;
        } else {
          const py::dict od = out;
          const int64_t n = static_cast<int64_t>(c.sources.size()), h = height, w = width;
          std::vector<std::vector<int64_t>> want = {
              {n, 3, h, w}, {n, 1, h, w}, {n, 1, h / 4, w / 4}};
          std::vector<std::string> keys = {"image", "gradient", "prior"};
          std::vector<bool> f32 = {false, false, false};
          if (v.detail_crops) {
            const auto shapes = view_shapes(v, static_cast<py::ssize_t>(n));
            for (int k = 0; k < 6; ++k) {
              if (k >= 4 && !v.grid_crops) continue;  // no grid: its buffers are optional
              keys.push_back(kViewKeys[k]);
              want.emplace_back(shapes[k].begin(), shapes[k].end());
              f32.push_back(view_is_float32(k));
            }
          }
          std::vector<void*> ptrs;
          for (size_t k = 0; k < keys.size(); ++k) {
            if (!od.contains(keys[k]))
              throw py::value_error("out is missing '" + keys[k] + "'");
            const py::object arr = od[keys[k].c_str()];
            if (py::isinstance<py::array>(arr))
              throw py::type_error("out arrays must be in GPU memory (CuPy, torch CUDA, DLPack)");
            out_views.push_back(to_view(arr, true, s));
            const View& ov = out_views.back();
            const bool half = c.params.half && !f32[k];
            bool contiguous = ov.device && ov.strides.size() == want[k].size();
            int64_t step = half ? 2 : 4;
            for (int d = static_cast<int>(want[k].size()) - 1; contiguous && d >= 0; --d) {
              contiguous = ov.strides[d] == step || want[k][d] == 1;
              step *= want[k][d];
            }
            if (!ov.device || ov.shape != want[k] || ov.dtype != (half ? "<f2" : "<f4") ||
                !contiguous)
              throw py::value_error("out['" + keys[k] + "'] must be a C-contiguous " +
                                    (half ? "float16" : "float32") + " GPU array of shape " +
                                    shape_str(want[k]));
            ptrs.push_back(reinterpret_cast<void*>(ov.ptr));
          }
          add_producers(out_views, s, c.producers);  // their readers/writers come first
          o = {ptrs[0], ptrs[1], ptrs[2]};
          if (v.detail_crops)
            vo = {ptrs[3], ptrs[4], static_cast<float*>(ptrs[5]), static_cast<float*>(ptrs[6]),
                  v.grid_crops ? ptrs[7] : nullptr,
                  v.grid_crops ? static_cast<float*>(ptrs[8]) : nullptr};
          out_device = true;
          result = out;
        }
        std::string err;
        {
          py::gil_scoped_release release;
          err = saliq::preprocess_cuda(c.sources.data(), static_cast<int>(c.sources.size()),
                                       c.params, o, c.device, out_device, s, v, vo, c.producers);
        }
        if (!err.empty()) throw std::runtime_error("CUDA preprocessing failed: " + err);
        return result;
#else
        (void)frames, (void)fmt, (void)height, (void)width, (void)mean, (void)stdev;
        (void)dtype, (void)matrix, (void)yuv_range, (void)pitch, (void)stream, (void)out;
        (void)views;
        return py::none();
#endif
      },
      py::arg("frames"), py::arg("fmt"), py::arg("height"), py::arg("width"),
      py::arg("mean") = std::vector<float>{0.5f, 0.5f, 0.5f},
      py::arg("std") = std::vector<float>{0.5f, 0.5f, 0.5f}, py::arg("dtype") = "float32",
      py::arg("matrix") = "bt601", py::arg("yuv_range") = "limited", py::arg("pitch") = py::none(),
      py::arg("stream") = py::none(), py::arg("out") = py::none(), py::arg("views") = py::none(),
      R"doc(As preprocess(), on the GPU (views too: the small priors are copied to the host, the
crops placed there, then cut by kernels; with `out=`, pass a device array for every output,
"grid"/"grid_boxes" only when grid_crops > 0).
Frames may be host arrays or device arrays, zero-copy:
__cuda_array_interface__ (CuPy, Numba) or DLPack (PyTorch, JAX, TensorFlow, ...; the exporter is
told `stream` so its pending writes are ordered first). An interface's `stream` (version 3) is
waited for before the first copy or kernel, for inputs and out= arrays alike: None = no wait;
no key (version 2) = the legacy default stream, unless the object also offers DLPack, which
is then used instead. stream: None (legacy default stream), an int cudaStream_t, or a torch/CuPy
stream. out: None -> host numpy outputs (synchronised), or a
dict of C-contiguous device arrays to write (asynchronous on `stream`: keep inputs and outputs
alive until it completes). Raises RuntimeError naming the cause when the build has no CUDA or no
device is usable.)doc");

  m.def(
      "place_crops",
      [](const py::array_t<float, py::array::c_style | py::array::forcecast>& prior, int width,
         int height, const py::object& views) {
        const saliq::ViewParams v = parse_views(views.is_none() ? py::dict() : views);
        if (prior.ndim() != 2 || prior.shape(0) < 1 || prior.shape(1) < 1)
          throw py::value_error("prior must be a non-empty 2-D [H/4, W/4] array");
        if (width < 1 || height < 1)
          throw py::value_error("width and height must be positive");
        py::array_t<int64_t> windows({static_cast<py::ssize_t>(v.detail_crops),
                                      static_cast<py::ssize_t>(2)});
        py::array_t<float> weights(v.detail_crops);
        std::vector<saliq::Window> w(v.detail_crops);
        int side = 0;
        saliq::place_detail_crops(prior.data(), static_cast<int>(prior.shape(0)),
                                  static_cast<int>(prior.shape(1)), width, height, v, w.data(),
                                  weights.mutable_data(), &side);
        for (int k = 0; k < v.detail_crops; ++k) {
          windows.mutable_at(k, 0) = w[k].x0;
          windows.mutable_at(k, 1) = w[k].y0;
        }
        return py::make_tuple(windows, side, weights);
      },
      py::arg("prior"), py::arg("width"), py::arg("height"), py::arg("views") = py::none(),
      "The detail crops' placement on a float32 prior (as saliq.views.place_detail_crops): "
      "(windows [K, 2] int64 top-left (x0, y0), side Q, weights [K] float32).");
  m.def(
      "grid_windows",
      [](int width, int height, const py::object& views) {
        const saliq::ViewParams v = parse_views(views.is_none() ? py::dict() : views);
        if (width < 1 || height < 1)
          throw py::value_error("width and height must be positive");
        std::vector<saliq::Window> w(v.grid_crops);
        const int side = saliq::grid_windows(width, height, v, w.data());
        py::array_t<int64_t> windows({static_cast<py::ssize_t>(v.grid_crops),
                                      static_cast<py::ssize_t>(2)});
        for (int k = 0; k < v.grid_crops; ++k) {
          windows.mutable_at(k, 0) = w[k].x0;
          windows.mutable_at(k, 1) = w[k].y0;
        }
        return py::make_tuple(windows, side);
      },
      py::arg("width"), py::arg("height"), py::arg("views") = py::none(),
      "The grid crops' windows (as saliq.views.grid_windows): ([G, 2] int64, side).");

  m.def("cuda_available", [] { return unavailable_reason().empty(); },
        "True when this build has CUDA and a usable device is present.");
  m.def("cuda_unavailable_reason", &unavailable_reason,
        "Why the GPU path cannot run ('' when it can).");
  m.def("set_num_threads", &saliq::set_num_threads, py::arg("n"),
        "CPU threads per call (0 = hardware concurrency). Use 1 in data-loader workers.");
  m.def("get_num_threads", &saliq::get_num_threads, "CPU threads per call.");
  m.attr("built_with_cuda") =
#ifdef SALIQ_WITH_CUDA
      true;
#else
      false;
#endif
}
