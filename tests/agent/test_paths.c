/* Where a development build finds its data files (layer, profiles): below the source tree, or
   below the build directory it was configured as, wherever that is (issue 11.5). */
#include <criterion/criterion.h>
#include <limits.h>
#include <unistd.h>

#include "config.h"
#include "util/paths.h"

Test(paths, in_tree_build) {
  cr_assert(kbox_is_dev_binary("/src/kbox/build/src/kbox", "/src/kbox", "/src/kbox/build"));
}

Test(paths, out_of_tree_build) {
  cr_assert(kbox_is_dev_binary("/tmp/b/src/kbox", "/src/kbox", "/tmp/b"));
  cr_assert(kbox_is_dev_binary("/tmp/b/src/kbox", "/src/kbox", "/tmp/b/"));
}

Test(paths, installed_binary_is_not) {
  cr_assert_not(kbox_is_dev_binary("/usr/local/bin/kbox", "/src/kbox", "/tmp/b"));
  cr_assert_not(kbox_is_dev_binary("/usr/local/bin/kbox", "/src/kbox", NULL));
}

Test(paths, name_prefix_is_not_a_parent) {
  cr_assert_not(kbox_is_dev_binary("/tmp/b2/src/kbox", "/src/kbox", "/tmp/b"));
  cr_assert_not(kbox_is_dev_binary("/src/kbox-other/kbox", "/src/kbox", "/tmp/b"));
  cr_assert_not(kbox_is_dev_binary("/tmp/b/src/kbox", "/src/kbox", ""));
}

/* This very build: its own kbox binary lives below KBOX_BUILD_ROOT, so the rule says "dev". */
Test(paths, this_build_dir_counts) {
  cr_assert(kbox_is_dev_binary(KBOX_BUILD_ROOT "/src/kbox", KBOX_SOURCE_ROOT, KBOX_BUILD_ROOT));
  cr_assert(kbox_is_dev_binary(KBOX_BUILD_ROOT "/src/kbox", "/elsewhere/source", KBOX_BUILD_ROOT));
}
