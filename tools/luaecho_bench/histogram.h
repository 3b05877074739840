/*
 * histogram.h - an HDR-style log-linear latency histogram: exact below 256,
 * then 128 linear sub-buckets per power of two, so any value is kept within
 * 1/128 (0.8 %) of itself; values in nanoseconds up to 2^40 (18 minutes).
 * Fixed size (about 35 KiB), no allocation, recording is a shift and an add.
 */
#ifndef LUAECHO_BENCH_HISTOGRAM_H
#define LUAECHO_BENCH_HISTOGRAM_H

#include <stdint.h>

#define HIST_SUB_BITS 8                       /* 256 exact values, then 128 per octave */
#define HIST_MAX_BITS 40                      /* larger values are clamped */
#define HIST_BUCKETS ((HIST_MAX_BITS - HIST_SUB_BITS + 2) << (HIST_SUB_BITS - 1))

struct histogram {
    uint64_t count, min, max;
    double sum;
    uint64_t bucket[HIST_BUCKETS];
};

void hist_init(struct histogram *h);
void hist_record(struct histogram *h, uint64_t value);
/* The value at quantile q (0..1): the highest value its bucket holds, never
 * above the largest value recorded (0 when empty). */
uint64_t hist_quantile(const struct histogram *h, double q);
double hist_mean(const struct histogram *h);

#endif
