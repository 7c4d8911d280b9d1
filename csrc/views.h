// Preprocessing version 2 (docs/preprocessing.md): where the crop views go. Host-only C++
// (the CPU twin, the CUDA launcher and the bindings all call it), the same rules and the same
// tie-breaks as sdk/views.py, so both place identical crops on the same float32 prior.
//
// Exactness: every quantity compared here is computed exactly in double (cell and crop centres
// are multiples of 1/(2 cols) or of 0.5, squared distances of multiples of 0.5 below 2^26 are
// exact, bounds are x0 -/+ multiples of 0.5), so no rounding order or FMA contraction can make
// C++ and NumPy disagree on a comparison; the weights are summed in the same (row-major) order.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace saliq {

// ViewConfig (sdk/views.py); detail_crops == 0 means "version 1: no crop views".
struct ViewParams {
  int detail_crops = 0;          // K
  int crop_size = 96;            // P
  int salient_crops = 3;         // K_s
  int grid_crops = 0;            // n
  int grid_size = 224;           // Pg
  int canonical_long_side = 1920;  // L_c
};

struct Window {
  int x0, y0;
};

// Q: source pixels per side of a crop of `size` output pixels at the canonical scale; frames
// whose short side is below it are magnified (Q = the short side).
inline int window_side(int width, int height, int size, int long_side) {
  const double scale = std::min(1.0, static_cast<double>(long_side) / std::max(width, height));
  const int side = static_cast<int>(std::floor(size / scale + 0.5));
  return std::min(side, std::min(width, height));
}

// The window of `side` centred at `centre`, shifted inside [0, limit).
inline int clamp_origin(double centre, int side, int limit) {
  const double x = std::floor(centre - side / 2.0 + 0.5);
  return static_cast<int>(std::min(std::max(x, 0.0), static_cast<double>(limit - side)));
}

// Source (x, y) of the centre of cell (row i, column j) of a rows x cols map over the frame.
inline double cell_centre(int index, int cells, int extent) {
  return (index + 0.5) * extent / cells;
}

// Saliency weight of a window: the mean prior over the cells whose centres lie inside it,
// summed in row-major order in double; else the prior of the cell under the window's centre.
inline float window_weight(const float* prior, int rows, int cols, int width, int height,
                           const Window& win, int side) {
  double sum = 0.0;
  int count = 0;
  for (int i = 0; i < rows; ++i) {
    const double cy = cell_centre(i, rows, height);
    if (cy < win.y0 || cy >= win.y0 + side) continue;
    for (int j = 0; j < cols; ++j) {
      const double cx = cell_centre(j, cols, width);
      if (cx >= win.x0 && cx < win.x0 + side) {
        sum += static_cast<double>(prior[static_cast<int64_t>(i) * cols + j]);
        ++count;
      }
    }
  }
  if (count) return static_cast<float>(sum / count);
  const int row = std::min(rows - 1, static_cast<int>((win.y0 + side / 2.0) * rows / height));
  const int col = std::min(cols - 1, static_cast<int>((win.x0 + side / 2.0) * cols / width));
  return prior[static_cast<int64_t>(row) * cols + col];
}

// Detail crops on a rows x cols prior (row-major float32) of a width x height frame: K
// windows of side `*side_out` into `windows`, their saliency weights into `weights`.
inline void place_detail_crops(const float* prior, int rows, int cols, int width, int height,
                               const ViewParams& v, Window* windows, float* weights,
                               int* side_out) {
  const int side = window_side(width, height, v.crop_size, v.canonical_long_side);
  const int cells = rows * cols;
  std::vector<double> cx(cells), cy(cells), centre_x(cells), centre_y(cells);
  std::vector<int> ox(cells), oy(cells);
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) {
      const int c = i * cols + j;
      cx[c] = cell_centre(j, cols, width);
      cy[c] = cell_centre(i, rows, height);
      ox[c] = clamp_origin(cx[c], side, width);
      oy[c] = clamp_origin(cy[c], side, height);
      centre_x[c] = ox[c] + side / 2.0;  // the crop's centre, after the shift inside
      centre_y[c] = oy[c] + side / 2.0;
    }
  std::vector<char> available(cells, 1);
  int n_available = cells;
  std::vector<int> chosen;
  chosen.reserve(v.detail_crops);
  // A crop makes unavailable every cell centred within its window grown by Q/2 each side.
  auto suppress = [&](int cell) {
    const double lo_x = ox[cell] - side / 2.0, hi_x = ox[cell] + 1.5 * side;
    const double lo_y = oy[cell] - side / 2.0, hi_y = oy[cell] + 1.5 * side;
    for (int c = 0; c < cells; ++c)
      if (available[c] && cx[c] >= lo_x && cx[c] < hi_x && cy[c] >= lo_y && cy[c] < hi_y) {
        available[c] = 0;
        --n_available;
      }
  };
  // 1. Salient crops: the highest available cell (first in row-major order on ties), while > 0.
  for (int k = 0; k < v.salient_crops && n_available > 0; ++k) {
    int best = -1;
    float best_value = 0.f;
    for (int c = 0; c < cells; ++c)
      if (available[c] && (best < 0 || prior[c] > best_value)) {
        best = c;
        best_value = prior[c];
      }
    if (!(best_value > 0.f)) break;  // no peak left: the rest is coverage
    chosen.push_back(best);
    suppress(best);
  }
  // 2./3. Coverage crops: farthest from the placed crops (first near the frame's centre), over
  // the available cells, or over all cells once none is available.
  while (static_cast<int>(chosen.size()) < v.detail_crops) {
    const bool all = n_available == 0;
    int best = -1;
    if (chosen.empty()) {
      const double mx = width / 2.0, my = height / 2.0;
      double best_dist = std::numeric_limits<double>::infinity();
      for (int c = 0; c < cells; ++c) {
        if (!all && !available[c]) continue;
        const double dx = centre_x[c] - mx, dy = centre_y[c] - my;
        const double d = std::sqrt(dx * dx + dy * dy);
        if (best < 0 || d < best_dist) {
          best = c;
          best_dist = d;
        }
      }
    } else {
      double best_dist = -std::numeric_limits<double>::infinity();
      for (int c = 0; c < cells; ++c) {
        if (!all && !available[c]) continue;
        double nearest = std::numeric_limits<double>::infinity();
        for (int p : chosen) {
          const double dx = centre_x[c] - centre_x[p], dy = centre_y[c] - centre_y[p];
          nearest = std::min(nearest, std::sqrt(dx * dx + dy * dy));
        }
        if (best < 0 || nearest > best_dist) {
          best = c;
          best_dist = nearest;
        }
      }
    }
    chosen.push_back(best);
    suppress(best);
  }
  for (int k = 0; k < v.detail_crops; ++k) {
    windows[k] = {ox[chosen[k]], oy[chosen[k]]};
    weights[k] = window_weight(prior, rows, cols, width, height, windows[k], side);
  }
  *side_out = side;
}

// The n grid crops of a width x height frame, row-major, into `windows`; returns their side.
inline int grid_windows(int width, int height, const ViewParams& v, Window* windows) {
  const int n = v.grid_crops;
  const int side = window_side(width, height, v.grid_size, v.canonical_long_side);
  if (n == 0) return side;
  // Python's round(): half to even, which nearbyint does in the default rounding mode.
  const double ideal = std::sqrt(static_cast<double>(n) * height / width);
  const int rows = std::min(n, std::max(1, static_cast<int>(std::nearbyint(ideal))));
  const int cols = (n + rows - 1) / rows;
  int k = 0;
  for (int r = 0; r < rows && k < n; ++r)
    for (int c = 0; c < cols && k < n; ++c, ++k)
      windows[k] = {clamp_origin(cell_centre(c, cols, width), side, width),
                    clamp_origin(cell_centre(r, rows, height), side, height)};
  return side;
}

// Normalised (x0, y0, x1, y1) of a window, as float32.
inline void window_box(const Window& w, int side, int width, int height, float* box) {
  box[0] = static_cast<float>(static_cast<double>(w.x0) / width);
  box[1] = static_cast<float>(static_cast<double>(w.y0) / height);
  box[2] = static_cast<float>(static_cast<double>(w.x0 + side) / width);
  box[3] = static_cast<float>(static_cast<double>(w.y0 + side) / height);
}

}  // namespace saliq
