/* A growable NULL-terminated vector of owned strings (argv/envp shaped). */
#ifndef KBOX_STRV_H
#define KBOX_STRV_H

#include <stddef.h>

struct kbox_strv {
  char **v; /* always NULL-terminated once anything was added */
  size_t n;
  size_t cap;
};

void kbox_strv_add(struct kbox_strv *s, const char *str);
void kbox_strv_add_owned(struct kbox_strv *s, char *str);
/* Set "KEY=VALUE", replacing an existing KEY. */
void kbox_strv_setenv(struct kbox_strv *s, const char *key, const char *value);
/* Value of KEY in an env vector, or NULL. */
const char *kbox_strv_getenv(const struct kbox_strv *s, const char *key);
void kbox_strv_free(struct kbox_strv *s);

#endif
