// Checks sgemm-packed.h against a plain loop in double precision, on shapes that end in
// every partial panel, token block and k block, with each weight type, and row-max.h and
// fa-mask.h against ggml's loops. Built and run by __tests__/sgemm-packed.test.js, once for AVX2 and
// once for AVX-512 where the CPU has it. Prints one line per case and exits 1 if any
// output is off.
#include "fa-mask.h"
#include "row-max.h"
#include "sgemm-packed.h"

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

using namespace orion_packed;

static uint16_t to_half(float f) { return _cvtss_sh(f, 0); }
static float from_half(uint16_t h) { return _cvtsh_ss(h); }
static uint16_t to_bf16(float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return (uint16_t) (b >> 16);
}
static float from_bf16(uint16_t h) {
    uint32_t b = (uint32_t) h << 16;
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}

// Compares c (n rows of m outputs, stride ldc) with a's products with b in double
// precision (a: m rows of k weights, stride row), and checks that nothing past the m
// outputs of a row was written; prints one line.
static bool compare(const char * what, const float * a, int64_t row, const float * b, int64_t ldb, const float * c,
                    int64_t ldc, int64_t m, int64_t n, int64_t k, int nth) {
    double worst = 0;
    for (int64_t j = 0; j < n; ++j)
        for (int64_t i = 0; i < m; ++i) {
            double want = 0;
            for (int64_t l = 0; l < k; ++l) want += (double) a[i * row + l] * b[j * ldb + l];
            double got = c[j * ldc + i];
            double err = std::fabs(got - want) / std::sqrt((double) k);
            if (!(err <= worst)) worst = std::isnan(got) ? INFINITY : err;
        }
    bool untouched = true;
    for (int64_t j = 0; j < n; ++j)
        for (int64_t i = m; i < ldc; ++i) untouched &= std::isnan(c[j * ldc + i]);
    const bool ok = worst < 1e-5 && untouched;
    std::printf("%s %s m=%lld n=%lld k=%lld threads=%d worst=%.2e%s\n", ok ? "ok" : "FAIL", what, (long long) m,
                (long long) n, (long long) k, nth, worst, untouched ? "" : " (wrote past m)");
    return ok;
}

template <Weights W>
static bool check(int64_t m, int64_t n, int64_t k, int nth, std::mt19937 & rng) {
    if (W == Weights::Q8_0 && k % 32) return true;  // q8_0 rows are whole blocks
    std::normal_distribution<float> d(0, 1);
    // Strides wider than the rows, as views have; lda counts blocks for q8_0.
    const int64_t lda = W == Weights::Q8_0 ? k / 32 + 1 : k + 3, ldb = k + 5, ldc = m + 7;
    const int64_t row = W == Weights::Q8_0 ? lda * 32 : lda;  // a's stride, in weights
    std::vector<float> a(m * row), b(n * ldb), c(n * ldc, NAN);
    std::vector<uint16_t> a16(m * lda);
    std::vector<q8_0_block> a8(m * lda);
    for (int64_t i = 0; i < m * lda; ++i) {
        if (W == Weights::Q8_0) {
            a8[i].d = to_half(std::fabs(d(rng)) / 64);
            for (int t = 0; t < 32; ++t) {
                a8[i].qs[t] = (int8_t) std::uniform_int_distribution<int>(-127, 127)(rng);
                a[i * 32 + t] = from_half(a8[i].d) * a8[i].qs[t];
            }
            continue;
        }
        float v = d(rng);
        if (W == Weights::F16) a16[i] = to_half(v), v = from_half(a16[i]);
        if (W == Weights::BF16) a16[i] = to_bf16(v), v = from_bf16(a16[i]);
        a[i] = v;
    }
    for (auto & v : b) v = d(rng);
    const void * A = W == Weights::F32    ? (const void *) a.data() :
                     W == Weights::Q8_0 ? (const void *) a8.data() :
                                          (const void *) a16.data();
    for (int ith = 0; ith < nth; ++ith) gemm<W>(ith, nth, m, n, k, A, lda, b.data(), ldb, c.data(), ldc);
    const char * what = W == Weights::F32 ? "f32" : W == Weights::F16 ? "f16" : W == Weights::BF16 ? "bf16" : "q8_0";
    return compare(what, a.data(), row, b.data(), ldb, c.data(), ldc, m, n, k, nth);
}

// Weights packed once (prepack, gemm_prepacked): m a multiple of NR, rows of exactly k.
template <Weights W>
static bool check_prepacked(int64_t m, int64_t n, int64_t k, int nth, std::mt19937 & rng) {
    std::normal_distribution<float> d(0, 1);
    const int64_t ldb = k + 5, ldc = m + 7;
    std::vector<float> a(m * k), b(n * ldb), c(n * ldc, NAN), packed(m * k);
    std::vector<uint16_t> a16(m * k);
    for (int64_t i = 0; i < m * k; ++i) {
        float v = d(rng);
        if (W == Weights::F16) a16[i] = to_half(v), v = from_half(a16[i]);
        if (W == Weights::BF16) a16[i] = to_bf16(v), v = from_bf16(a16[i]);
        a[i] = v;
    }
    for (auto & v : b) v = d(rng);
    const void * A = W == Weights::F32 ? (const void *) a.data() : (const void *) a16.data();
    prepack<W>(packed.data(), A, m, k);
    for (int ith = 0; ith < nth; ++ith) gemm_prepacked<W>(ith, nth, m, n, k, packed.data(), b.data(), ldb, c.data(), ldc);
    const char * what = W == Weights::F32 ? "prepacked f32" : W == Weights::F16 ? "prepacked f16" : "prepacked bf16";
    return compare(what, a.data(), k, b.data(), ldb, c.data(), ldc, m, n, k, nth);
}

// The largest of a row against ggml's loop, on every length up to 70 (each part of a
// vector, either side of two vectors, at both widths), 100 and 1,000: random rows, rows with the
// largest last, and rows of -inf with one finite entry anywhere (flash attention skips a
// query's tile when the largest is -inf).
static bool check_row_max(std::mt19937 & rng) {
    std::normal_distribution<float> d(0, 1);
    int cases = 0, wrong = 0;
    auto expect = [&](const std::vector<float> & x) {
        float want = -INFINITY;
        for (float v : x) want = want > v ? want : v;  // ggml_vec_max_f32's loop
        const float got = orion_row_max::row_max((int) x.size(), x.data());
        ++cases;
        if (!(got == want)) {
            ++wrong;
            std::printf("FAIL row max n=%zu: %g, not %g\n", x.size(), got, want);
        }
    };
    std::vector<int> lengths(71);
    for (int n = 0; n <= 70; ++n) lengths[n] = n;
    lengths.push_back(100);
    lengths.push_back(1000);
    for (int n : lengths) {
        std::vector<float> x(n);
        for (auto & v : x) v = d(rng);
        expect(x);
        if (n) {
            x[n - 1] = 100;
            expect(x);
        }
        for (int at = 0; at < n && n <= 100; ++at) {
            std::vector<float> y(n, -INFINITY);
            y[at] = d(rng) - 50;
            expect(y);
        }
        expect(std::vector<float>(n, -INFINITY));
    }
    std::printf("%s row max: %d rows, %d wrong\n", wrong ? "FAIL" : "ok", cases, wrong);
    return !wrong;
}

// A row of flash attention's mask tile against ggml's loop, bit for bit: every length of
// a tile's row (1 to 64 keys), slopes of 1 and others, rows of -inf with one kept key
// anywhere, rows with NaN, and whether any key is kept.
static bool check_fa_mask(std::mt19937 & rng) {
    std::normal_distribution<float> d(0, 1);
    int cases = 0, wrong = 0;
    auto expect = [&](const std::vector<uint16_t> & m, float slope) {
        const int n = (int) m.size();
        std::vector<float> want(n), got(n, 7.0f);
        bool want_kept = false;
        for (int t = 0; t < n; t++) {  // ggml's loop
            want[t] = slope * from_half(m[t]);
            if (want[t] != -INFINITY) want_kept = true;
        }
        const bool kept = orion_fa_mask_row_with(m.data(), got.data(), n, slope, from_half);
        ++cases;
        if (kept != want_kept || std::memcmp(want.data(), got.data(), n * sizeof(float)) != 0) {
            ++wrong;
            std::printf("FAIL fa mask n=%d slope=%g\n", n, slope);
        }
    };
    const uint16_t minus_inf = to_half(-INFINITY), nan = to_half(NAN);
    for (int n = 1; n <= 64; ++n)
        for (float slope : { 1.0f, 0.5f, 0.0625f }) {
            std::vector<uint16_t> m(n);
            for (auto & h : m) h = d(rng) > 0 ? to_half(d(rng)) : minus_inf;
            expect(m, slope);
            for (int at = 0; at < n; ++at) {
                std::vector<uint16_t> one(n, minus_inf);
                one[at] = to_half(d(rng));
                expect(one, slope);
            }
            expect(std::vector<uint16_t>(n, minus_inf), slope);
            std::vector<uint16_t> with_nan(n, minus_inf);
            with_nan[n - 1] = nan;
            expect(with_nan, slope);
        }
    std::printf("%s fa mask: %d rows, %d wrong\n", wrong ? "FAIL" : "ok", cases, wrong);
    return !wrong;
}

int main() {
    std::mt19937 rng(42);
    bool ok = true;
    const int64_t shapes[][3] = {
        { NR, MR, 8 },         { 384, 64, 384 },  { 384, 448, 1536 }, { 1536, 37, 384 }, { 45, 33, 1000 },
        { NR + 1, MR + 1, 9 }, { 7, 5, 3 },       { 100, 1, KC + 1 },  { 64, 250, KC * 2 }, { 3 * NR - 5, 71, 31 }, { 50, 40, KC + 32 },
    };
    for (auto & s : shapes)
        for (int nth : { 1, 2, 3, 16 }) {
            ok &= check<Weights::F32>(s[0], s[1], s[2], nth, rng);
            ok &= check<Weights::F16>(s[0], s[1], s[2], nth, rng);
            ok &= check<Weights::BF16>(s[0], s[1], s[2], nth, rng);
            ok &= check<Weights::Q8_0>(s[0], s[1], s[2], nth, rng);
        }
    // A text's products (few tokens) against a model's weights, and the edges.
    const int64_t prepacked[][3] = {
        { NR, 1, 8 }, { 384, 15, 384 }, { 1536, 7, 384 }, { 384, 13, 1536 }, { 3 * NR, 40, KC + 1 }, { NR, MR + 1, 9 },
    };
    for (auto & s : prepacked)
        for (int nth : { 1, 2, 3, 16 }) {
            ok &= check_prepacked<Weights::F32>(s[0], s[1], s[2], nth, rng);
            ok &= check_prepacked<Weights::F16>(s[0], s[1], s[2], nth, rng);
            ok &= check_prepacked<Weights::BF16>(s[0], s[1], s[2], nth, rng);
        }
    ok &= check_row_max(rng);
    ok &= check_fa_mask(rng);
    std::printf("%s: vectors of %d floats, panels of %d rows, %d tokens per kernel\n", ok ? "PASS" : "FAIL", VL, NR,
                MR);
    return ok ? 0 : 1;
}
