/* Diagnostics on stderr, prefixed with "kbox:" and, when set, the sandbox id. */
#ifndef KBOX_LOG_H
#define KBOX_LOG_H

enum kbox_log_level { KBOX_LOG_ERROR, KBOX_LOG_WARN, KBOX_LOG_INFO, KBOX_LOG_DEBUG };

void kbox_log_set_level(enum kbox_log_level level);
void kbox_log_set_id(const char *id);
void kbox_log(enum kbox_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One line "kbox[ID]: TAG: MSG" whatever the level, written with one write(2) so lines of
   several processes sharing stderr do not interleave (--trace-setup). */
void kbox_log_line(const char *tag, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define kbox_warn(...) kbox_log(KBOX_LOG_WARN, __VA_ARGS__)
#define kbox_info(...) kbox_log(KBOX_LOG_INFO, __VA_ARGS__)
#define kbox_debug(...) kbox_log(KBOX_LOG_DEBUG, __VA_ARGS__)

#endif
