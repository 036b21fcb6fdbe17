#include "kernel/pyboxout.h"
#include "util/alloc.h"

#include <stdlib.h>
#include <string.h>

void kbox_pyboxout_init(struct kbox_pyboxout *o, uint64_t max_bytes) {
  memset(o, 0, sizeof(*o));
  o->data = json_array();
  o->max_bytes = max_bytes;
}

void kbox_pyboxout_free(struct kbox_pyboxout *o) {
  json_decref(o->data);
  json_decref(o->error);
  o->data = o->error = NULL;
}

/* Bytes a bundle costs: the length of its string values (base64 images included). */
static uint64_t bundle_size(json_t *bundle) {
  uint64_t n = 0;
  const char *k;
  json_t *v;
  json_object_foreach(bundle, k, v) {
    if (json_is_string(v)) n += json_string_length(v);
    else {
      char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
      n += s ? strlen(s) : 0;
      free(s);
    }
  }
  return n;
}

static uint64_t room(const struct kbox_pyboxout *o) {
  if (o->max_bytes == 0) return UINT64_MAX;
  return o->bytes >= o->max_bytes ? 0 : o->max_bytes - o->bytes;
}

void kbox_pyboxout_add_bundle(struct kbox_pyboxout *o, json_t *bundle) {
  if (!json_is_object(bundle)) return;
  o->stream[0] = '\0';
  uint64_t size = bundle_size(bundle);
  if (o->dropped > 0 || size > room(o)) { /* bundles are kept whole or not at all; order is kept */
    o->dropped += size;
    return;
  }
  o->bytes += size;
  json_array_append_new(o->data, json_deep_copy(bundle));
}

/* Length of the longest prefix of s (at most n bytes) that does not split a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t n) {
  while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
  return n;
}

void kbox_pyboxout_add_stream(struct kbox_pyboxout *o, const char *name, const char *text) {
  size_t len = strlen(text);
  if (o->dropped > 0) {
    o->dropped += len;
    return;
  }
  size_t keep = len;
  if ((uint64_t)len > room(o)) keep = utf8_cut(text, (size_t)room(o));
  o->dropped += len - keep;
  o->bytes += keep;
  if (keep == 0) return;
  size_t n = json_array_size(o->data);
  if (n > 0 && o->stream[0] != '\0' && strcmp(o->stream, name) == 0) {
    json_t *last = json_object_get(json_array_get(o->data, n - 1), "text/plain");
    size_t old = json_string_length(last);
    char *joined = xmalloc(old + keep + 1);
    memcpy(joined, json_string_value(last), old);
    memcpy(joined + old, text, keep);
    json_string_setn_nocheck(last, joined, old + keep);
    free(joined);
    return;
  }
  snprintf(o->stream, sizeof(o->stream), "%s", name);
  json_array_append_new(o->data, json_pack("{s:s%}", "text/plain", text, keep));
}

void kbox_pyboxout_set_error(struct kbox_pyboxout *o, json_t *content) {
  json_t *tb = json_object_get(content, "traceback");
  json_t *e = json_pack("{s:O?, s:O?, s:o}", "ename", json_object_get(content, "ename"), "evalue",
                        json_object_get(content, "evalue"), "traceback", json_is_array(tb) ? json_incref(tb) : json_array());
  json_decref(o->error);
  o->error = e;
  o->stream[0] = '\0';
}

void kbox_pyboxout_note_lost(struct kbox_pyboxout *o, uint64_t bytes, const char *reason) {
  o->lost += bytes > 0 ? bytes : 1;
  snprintf(o->lost_reason, sizeof(o->lost_reason), "%s", reason);
}

void kbox_pyboxout_set_kbox_error(struct kbox_pyboxout *o, const char *ename, const char *evalue) {
  json_decref(o->error);
  o->error = json_pack("{s:s, s:s, s:[]}", "ename", ename, "evalue", evalue, "traceback");
}

json_t *kbox_pyboxout_json(const struct kbox_pyboxout *o) {
  json_t *data = json_deep_copy(o->data);
  if (o->dropped > 0) {
    char marker[256];
    snprintf(marker, sizeof(marker), "[kbox: output truncated: %llu more bytes dropped (--max-output %llu)]",
             (unsigned long long)o->dropped, (unsigned long long)o->max_bytes);
    json_array_append_new(data, json_pack("{s:s}", "text/plain", marker));
  }
  if (o->lost > 0) {
    char marker[300];
    snprintf(marker, sizeof(marker), "[kbox: output lost: %s]", o->lost_reason);
    json_array_append_new(data, json_pack("{s:s}", "text/plain", marker));
  }
  json_t *r = json_pack("{s:o, s:O, s:b}", "data", data, "error", o->error ? o->error : json_null(), "truncated",
                        o->dropped > 0 || o->lost > 0);
  if (o->lost > 0) json_object_set_new(r, "truncated_reason", json_string(o->lost_reason));
  else if (o->dropped > 0) json_object_set_new(r, "truncated_reason", json_string("--max-output"));
  return r;
}

/* Print s without ANSI escape sequences (tracebacks are colored). */
static void put_plain(const char *s, FILE *out) {
  for (const char *p = s; *p; p++) {
    if (*p == '\x1b' && p[1] == '[') {
      p += 2;
      while (*p && !(*p >= '@' && *p <= '~')) p++;
      if (*p == '\0') break;
      continue;
    }
    fputc(*p, out);
  }
}

void kbox_pyboxout_render_text(json_t *result, FILE *out) {
  size_t i;
  json_t *b;
  json_array_foreach(json_object_get(result, "data"), i, b) {
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v) {
      if (strcmp(k, "text/plain") == 0) continue;
      fprintf(out, "[%s: %zu bytes]\n", k, json_is_string(v) ? json_string_length(v) : (size_t)0);
    }
    const char *text = json_string_value(json_object_get(b, "text/plain"));
    if (text != NULL) {
      put_plain(text, out);
      if (text[0] && text[strlen(text) - 1] != '\n') fputc('\n', out);
    }
  }
  json_t *e = json_object_get(result, "error");
  if (json_is_object(e)) {
    json_t *tb = json_object_get(e, "traceback");
    if (json_array_size(tb) > 0) {
      json_t *line;
      json_array_foreach(tb, i, line) {
        if (!json_is_string(line)) continue;
        put_plain(json_string_value(line), out);
        fputc('\n', out);
      }
    } else {
      fprintf(out, "%s: %s\n", json_string_value(json_object_get(e, "ename")) ?: "Error",
              json_string_value(json_object_get(e, "evalue")) ?: "");
    }
  }
  const char *status = json_string_value(json_object_get(result, "status"));
  if (status != NULL && strcmp(status, "ok") != 0 && strcmp(status, "error") != 0)
    fprintf(out, "[kbox: %s]\n", json_string_value(json_object_get(result, "message")) ?: status);
}
