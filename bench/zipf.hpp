// Zipf(s) over {1..n} by rejection-inversion (Hörmann and Derflinger, 1996): O(1) memory
// and expected O(1) time, so 10 M keys need no table. s = 0 is uniform.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>

namespace bmc::bench {

class Zipf {
public:
    Zipf(std::uint64_t n, double s) : n_(n), s_(s) {
        if (s_ <= 0) return;
        h_x1_ = h_integral(1.5) - 1.0;
        h_n_ = h_integral(double(n_) + 0.5);
        threshold_ = 2.0 - h_integral_inverse(h_integral(2.5) - h(2.0));
    }

    // A rank in [1, n]; rank 1 is the most popular.
    template <class Rng>
    std::uint64_t operator()(Rng &rng) const {
        if (s_ <= 0) return std::uniform_int_distribution<std::uint64_t>(1, n_)(rng);
        std::uniform_real_distribution<double> uni(0.0, 1.0);
        for (;;) {
            const double u = h_n_ + uni(rng) * (h_x1_ - h_n_);
            const double x = h_integral_inverse(u);
            double k = std::floor(x + 0.5);
            if (k < 1) k = 1;
            if (k > double(n_)) k = double(n_);
            if (k - x <= threshold_ || u >= h_integral(k + 0.5) - h(k)) return std::uint64_t(k);
        }
    }

    std::uint64_t n() const { return n_; }
    double s() const { return s_; }

private:
    // H(x) = integral of x^-s, written so that s -> 1 stays accurate.
    double h_integral(double x) const {
        const double lx = std::log(x);
        return expm1_over_x((1.0 - s_) * lx) * lx;
    }
    double h(double x) const { return std::exp(-s_ * std::log(x)); }
    double h_integral_inverse(double x) const {
        double t = x * (1.0 - s_);
        if (t < -1.0) t = -1.0;
        return std::exp(log1p_over_x(t) * x);
    }
    static double expm1_over_x(double x) { return std::abs(x) > 1e-8 ? std::expm1(x) / x : 1.0 + x / 2; }
    static double log1p_over_x(double x) { return std::abs(x) > 1e-8 ? std::log1p(x) / x : 1.0 - x / 2; }

    std::uint64_t n_;
    double s_;
    double h_x1_ = 0, h_n_ = 0, threshold_ = 0;
};

}  // namespace bmc::bench
