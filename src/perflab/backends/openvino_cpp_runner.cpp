// perflab's OpenVINO C++ runner: the same OpenVINO build as the Python wheel, driven from C++.
//
// Started by perflab.backends.openvino_cpp, which compiles this file against the wheel's headers
// and libraries. Protocol (stdin/stdout of this process):
//   setup   argv: --model PATH --threads N --precision f32|bf16|f16|- --hint LATENCY|THROUGHPUT
//                 --streams N --shape NAME=D0,D1,...  (one --shape per input)
//           or    --calibrate (no model: only the busy-wait command below is served)
//           stdout, text lines: "version V", "prop KEY VALUE" (compiled-model properties), "in|out NAME TYPE NBYTES D0,D1,..",
//                 "layer TYPE PRECISION" per runtime-graph op, then "ready".
//   buffers stdin "shm PATH\n": the file holding every input then every output, back to back, in
//           the order listed; its bytes become the infer request's tensors (no copy). -> "ok\n".
//   loop    stdin 'r': one timed infer()   -> stdout 8 bytes: int64 steady_clock nanoseconds
//           stdin 'b' + int64 ns: busy-wait that long, timed the same way -> 8 bytes as above
//           stdin 'q' or end of file: exit 0.
// Errors go to stderr as one line "error: ..." and exit 1.
#include <openvino/openvino.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <map>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

using Clock = std::chrono::steady_clock;

static int64_t elapsed_ns(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count();
}

static void write_ns(int64_t ns) {
  if (fwrite(&ns, sizeof ns, 1, stdout) != 1 || fflush(stdout) != 0) _exit(1);
}

static int64_t busy_wait(int64_t ns) {
  auto t0 = Clock::now();
  auto t = t0;
  while (elapsed_ns(t0, t) < ns) t = Clock::now();
  return elapsed_ns(t0, t);
}

static std::string dims_text(const ov::Shape& shape) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s.empty() ? "-" : s;
}

static std::vector<size_t> parse_dims(const std::string& text) {
  std::vector<size_t> dims;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    dims.push_back(std::stoull(text.substr(pos, comma - pos)));
    pos = comma + 1;
  }
  return dims;
}

static std::string rt_text(const ov::RTMap& rt, const char* key) {
  auto it = rt.find(key);
  return it == rt.end() ? "-" : it->second.as<std::string>();
}

static int serve(ov::InferRequest* request) {
  for (;;) {
    int c = fgetc(stdin);
    if (c == EOF || c == 'q') return 0;
    if (c == 'r') {
      if (!request) {
        std::cerr << "error: no model loaded (calibration mode)" << std::endl;
        return 1;
      }
      auto t0 = Clock::now();
      request->infer();
      auto t1 = Clock::now();
      write_ns(elapsed_ns(t0, t1));
    } else if (c == 'b') {
      int64_t ns = 0;
      if (fread(&ns, sizeof ns, 1, stdin) != 1) return 1;
      write_ns(busy_wait(ns));
    } else {
      std::cerr << "error: unknown command byte " << c << std::endl;
      return 1;
    }
  }
}

int main(int argc, char** argv) try {
  std::string model_path, precision = "-", hint = "LATENCY";
  int threads = 0, streams = 0;
  bool calibrate = false;
  std::map<std::string, ov::PartialShape> shapes;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error("missing value after " + a);
      return argv[++i];
    };
    if (a == "--model") model_path = value();
    else if (a == "--threads") threads = std::stoi(value());
    else if (a == "--streams") streams = std::stoi(value());
    else if (a == "--precision") precision = value();
    else if (a == "--hint") hint = value();
    else if (a == "--calibrate") calibrate = true;
    else if (a == "--shape") {
      std::string s = value();
      size_t eq = s.rfind('=');
      if (eq == std::string::npos) throw std::runtime_error("--shape needs NAME=D0,D1,..");
      auto dims = parse_dims(s.substr(eq + 1));
      shapes[s.substr(0, eq)] = ov::PartialShape(ov::Shape(dims));
    } else throw std::runtime_error("unknown argument " + a);
  }
  std::cout << "version " << ov::get_openvino_version().buildNumber << "\n";
  if (calibrate) {
    std::cout << "ready" << std::endl;
    return serve(nullptr);
  }

  ov::Core core;
  auto model = core.read_model(model_path);
  // Static shapes: the CPU plugin then compiles one kernel set for exactly these dims.
  if (!shapes.empty()) model->reshape(shapes);
  ov::AnyMap config{{ov::hint::performance_mode.name(),
                     hint == "THROUGHPUT" ? ov::hint::PerformanceMode::THROUGHPUT
                                          : ov::hint::PerformanceMode::LATENCY}};
  if (precision != "-") config[ov::hint::inference_precision.name()] = ov::element::Type(precision);
  if (threads > 0) config[ov::inference_num_threads.name()] = threads;
  if (streams > 0) config[ov::num_streams.name()] = ov::streams::Num(streams);
  auto compiled = core.compile_model(model, "CPU", config);
  auto request = compiled.create_infer_request();

  std::cout << "prop FULL_DEVICE_NAME " << core.get_property("CPU", ov::device::full_name) << "\n";
  std::cout << "prop INFERENCE_PRECISION_HINT "
            << compiled.get_property(ov::hint::inference_precision) << "\n"
            << "prop PERFORMANCE_HINT " << compiled.get_property(ov::hint::performance_mode) << "\n"
            << "prop NUM_STREAMS " << compiled.get_property(ov::num_streams).num << "\n"
            << "prop INFERENCE_NUM_THREADS " << compiled.get_property(ov::inference_num_threads)
            << "\n";
  std::vector<std::pair<ov::Output<const ov::Node>, bool>> ports;
  for (const auto& p : compiled.inputs()) ports.emplace_back(p, true);
  for (const auto& p : compiled.outputs()) ports.emplace_back(p, false);
  size_t total = 0;
  for (const auto& [port, is_input] : ports) {
    ov::Shape shape = port.get_shape();
    size_t nbytes = ov::shape_size(shape) * port.get_element_type().size();
    total += nbytes;
    std::cout << (is_input ? "in " : "out ") << port.get_any_name() << " "
              << port.get_element_type().get_type_name() << " " << nbytes << " "
              << dims_text(shape) << "\n";
  }
  for (const auto& op : compiled.get_runtime_model()->get_ordered_ops()) {
    const auto& rt = op->get_rt_info();
    std::cout << "layer " << rt_text(rt, "layerType") << " " << rt_text(rt, "runtimePrecision")
              << "\n";
  }
  std::cout << "ready" << std::endl;

  std::string word, shm_path;
  if (!(std::cin >> word >> shm_path) || word != "shm") {
    std::cerr << "error: expected 'shm PATH' on stdin" << std::endl;
    return 1;
  }
  std::cin.get();  // the newline after the path
  int fd = open(shm_path.c_str(), O_RDWR);
  if (fd < 0) throw std::runtime_error("cannot open " + shm_path + ": " + strerror(errno));
  struct stat st {};
  fstat(fd, &st);
  if (static_cast<size_t>(st.st_size) < total)
    throw std::runtime_error(shm_path + " holds " + std::to_string(st.st_size) +
                             " bytes, the tensors need " + std::to_string(total));
  char* base = static_cast<char*>(
      mmap(nullptr, total ? total : 1, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  if (base == MAP_FAILED) throw std::runtime_error(std::string("mmap: ") + strerror(errno));
  close(fd);
  size_t offset = 0;
  for (const auto& [port, is_input] : ports) {
    ov::Tensor tensor(port.get_element_type(), port.get_shape(), base + offset);
    offset += tensor.get_byte_size();
    request.set_tensor(port, tensor);
  }
  std::cout << "ok" << std::endl;
  return serve(&request);
} catch (const std::exception& e) {
  std::string msg = e.what();
  for (auto& ch : msg)
    if (ch == '\n') ch = ' ';
  std::cerr << "error: " << msg << std::endl;
  return 1;
}
