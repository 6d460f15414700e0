/*
 * filecount: registrations per file of one connection.  Covers the limit
 * per key, counting down, keys that collide in the table's low bits (the
 * backward-shift deletion must keep every later key reachable), growth
 * past many keys, and key 0 (anonymous inodes) never counted.
 */
#include <errno.h>

#include "filecount.h"
#include "helpers.h"

START_TEST(test_filecount_limits_each_key_and_counts_down)
{
        FileCount f = { 0 };
        uint32_t a = filecount_key(8, 100), b = filecount_key(8, 101);

        ck_assert_uint_ne(a, b);
        for (int i = 0; i < 3; i++)
                ck_assert_int_eq(filecount_add(&f, a, 3), 0);
        ck_assert_int_eq(filecount_add(&f, a, 3), -ETOOMANYREFS);
        ck_assert_int_eq(filecount_add(&f, b, 3), 0); /* another file is not limited by a */
        filecount_remove(&f, a);
        ck_assert_int_eq(filecount_add(&f, a, 3), 0);
        ck_assert_int_eq(filecount_add(&f, a, 3), -ETOOMANYREFS);
        for (int i = 0; i < 3; i++)
                filecount_remove(&f, a);
        filecount_remove(&f, b);
        ck_assert_uint_eq(f.n, 0);
        filecount_done(&f);
}
END_TEST

START_TEST(test_filecount_key_zero_is_never_counted)
{
        FileCount f = { 0 };

        for (int i = 0; i < 100; i++)
                ck_assert_int_eq(filecount_add(&f, 0, 1), 0);
        filecount_remove(&f, 0);
        ck_assert_uint_eq(f.n, 0);
        ck_assert_uint_ne(filecount_key(0, 0), 0);
        filecount_done(&f);
}
END_TEST

/* Keys equal in their low bits land in one probe run; removing any of
 * them must leave the others findable (and their counts intact). */
START_TEST(test_filecount_colliding_keys_survive_removals)
{
        FileCount f = { 0 };
        enum { N = 40 };
        uint32_t k[N];

        for (int i = 0; i < N; i++) {
                k[i] = ((uint32_t)(i + 1) << 20) | 5; /* same low bits */
                ck_assert_int_eq(filecount_add(&f, k[i], 2), 0);
                ck_assert_int_eq(filecount_add(&f, k[i], 2), 0);
        }
        for (int i = 0; i < N; i += 2) { /* remove every other key entirely */
                filecount_remove(&f, k[i]);
                filecount_remove(&f, k[i]);
        }
        ck_assert_uint_eq(f.n, N / 2);
        for (int i = 1; i < N; i += 2)
                ck_assert_msg(filecount_add(&f, k[i], 2) == -ETOOMANYREFS, "key %d lost", i);
        for (int i = 0; i < N; i += 2)
                ck_assert_int_eq(filecount_add(&f, k[i], 2), 0);
        filecount_done(&f);
}
END_TEST

START_TEST(test_filecount_grows_to_many_keys)
{
        FileCount f = { 0 };

        for (uint64_t i = 1; i <= 5000; i++)
                ck_assert_int_eq(filecount_add(&f, filecount_key(1, i), 1), 0);
        ck_assert_uint_eq(f.n, 5000);
        ck_assert_uint_ge(f.cap, 5000 * 4 / 3);
        for (uint64_t i = 1; i <= 5000; i++)
                ck_assert_int_eq(filecount_add(&f, filecount_key(1, i), 1), -ETOOMANYREFS);
        for (uint64_t i = 1; i <= 5000; i++)
                filecount_remove(&f, filecount_key(1, i));
        ck_assert_uint_eq(f.n, 0);
        filecount_done(&f);
}
END_TEST

Suite *suite_filecount(void)
{
        Suite *s = suite_create("filecount");
        TCase *tc = test_tcase_default_timeout(s, "counts");

        tcase_add_test(tc, test_filecount_limits_each_key_and_counts_down);
        tcase_add_test(tc, test_filecount_key_zero_is_never_counted);
        tcase_add_test(tc, test_filecount_colliding_keys_survive_removals);
        tcase_add_test(tc, test_filecount_grows_to_many_keys);
        return s;
}
