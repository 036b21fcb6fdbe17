/* The result of running code in a kernel, in pybox's shape: {"data": [MIME bundles...], "error":
   null | {"ename", "evalue", "traceback"}}, with --max-output truncation and a text rendering. */
#ifndef KBOX_KERNEL_PYBOXOUT_H
#define KBOX_KERNEL_PYBOXOUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct kbox_pyboxout {
  json_t *data;         /* array of MIME bundles, in arrival order */
  json_t *error;        /* NULL or {ename, evalue, traceback} */
  bool timed_out;       /* a cell ran past its timeout and was interrupted */
  uint64_t max_bytes;   /* 0: unlimited */
  uint64_t bytes;       /* output kept */
  uint64_t dropped;     /* output bytes dropped by max_bytes */
  char stream[16];      /* name of the stream the last entry came from ("" = not a stream) */
  uint64_t lost;        /* output bytes dropped before reaching us (kbox's broker, --max-message) */
  char lost_reason[200];
};

void kbox_pyboxout_init(struct kbox_pyboxout *o, uint64_t max_bytes);
void kbox_pyboxout_free(struct kbox_pyboxout *o);
/* execute_result / display_data: append a copy of the data bundle. */
void kbox_pyboxout_add_bundle(struct kbox_pyboxout *o, json_t *bundle);
/* stream: {"text/plain": text}; consecutive chunks of the same stream are merged. */
void kbox_pyboxout_add_stream(struct kbox_pyboxout *o, const char *name, const char *text);
/* error: keep ename, evalue, traceback (the last error wins). */
void kbox_pyboxout_set_error(struct kbox_pyboxout *o, json_t *content);
/* Output that never arrived (the broker dropped a message): truncated, with the reason. */
void kbox_pyboxout_note_lost(struct kbox_pyboxout *o, uint64_t bytes, const char *reason);
/* An error made by kbox (kernel died, out of memory...), same shape. */
void kbox_pyboxout_set_kbox_error(struct kbox_pyboxout *o, const char *ename, const char *evalue);
/* {"data": [...], "error": ..., "truncated": bool[, "truncated_reason": why]} (a marker bundle ends
   data when truncated). */
json_t *kbox_pyboxout_json(const struct kbox_pyboxout *o);
/* Human rendering of a result JSON (as built by kbox_pyboxout_json plus status fields). */
void kbox_pyboxout_render_text(json_t *result, FILE *out);

#endif
