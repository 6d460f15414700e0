/*
 * fuzzcorpus: replays the fuzz corpus (tests/fuzz/corpus/<target>/: the
 * seeds and every crash reproducer found) through the fuzz targets of
 * tests/fuzz/, built here without libFuzzer: the target files are included
 * with LLVMFuzzerTestOneInput renamed.  Every file of both corpora goes
 * through both targets, each of which aborts on a broken invariant or a
 * leaked fd; the file being replayed is named on stderr when that happens.
 *
 * The corpus is found under $NETPOLL_SRC_DIR (the source tree) when that is
 * set, else relative to the working directory (make check runs from the
 * source tree).
 */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

#define LLVMFuzzerTestOneInput fuzzcorpus_codec_one_input
#include "fuzz/fuzz-codec.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzzcorpus_session_one_input
#include "fuzz/fuzz-session.c"
#undef LLVMFuzzerTestOneInput

typedef int (*FuzzTarget)(const uint8_t *data, size_t size);

static const char *const corpora[] = { "codec", "session" };

static char replaying[4096]; /* the file being replayed, for the crash handler */

static void replay_crashed(int sig)
{
        static const char what[] = "fuzzcorpus: crashed replaying ";

        (void)!write(STDERR_FILENO, what, sizeof(what) - 1);
        (void)!write(STDERR_FILENO, replaying, strlen(replaying));
        (void)!write(STDERR_FILENO, "\n", 1);
        signal(sig, SIG_DFL);
        raise(sig);
}

static void corpus_path(char *buf, size_t len, const char *target)
{
        const char *src = getenv("NETPOLL_SRC_DIR");

        if (src && *src)
                snprintf(buf, len, "%s/tests/fuzz/corpus/%s", src, target);
        else
                snprintf(buf, len, "tests/fuzz/corpus/%s", target);
}

static uint8_t *read_file(const char *path, size_t *ret_len)
{
        FILE *f = fopen(path, "re");
        struct stat st;
        uint8_t *buf;

        ck_assert_msg(f, "cannot open %s", path);
        ck_assert_int_eq(fstat(fileno(f), &st), 0);
        buf = malloc(st.st_size ? (size_t)st.st_size : 1);
        ck_assert_ptr_nonnull(buf);
        ck_assert_msg(fread(buf, 1, (size_t)st.st_size, f) == (size_t)st.st_size,
                      "cannot read %s", path);
        fclose(f);
        *ret_len = (size_t)st.st_size;
        return buf;
}

static int not_hidden(const struct dirent *e)
{
        return e->d_name[0] != '.';
}

/* Runs every file of corpus `target` through one; returns how many. */
static size_t replay_corpus(const char *target, FuzzTarget one)
{
        char dir[2048];
        struct dirent **names;
        size_t files = 0;

        corpus_path(dir, sizeof(dir), target);
        int n = scandir(dir, &names, not_hidden, alphasort);
        ck_assert_msg(n >= 0, "no corpus at %s (set NETPOLL_SRC_DIR to the source tree)", dir);
        for (int i = 0; i < n; i++) {
                struct stat st;
                size_t len;
                snprintf(replaying, sizeof(replaying), "%s/%s", dir, names[i]->d_name);
                free(names[i]);
                if (stat(replaying, &st) < 0 || !S_ISREG(st.st_mode))
                        continue;
                uint8_t *buf = read_file(replaying, &len);
                one(buf, len);
                free(buf);
                files++;
        }
        free(names);
        replaying[0] = '\0';
        return files;
}

/* Replays both corpora through one target; its own must not be empty. */
static void replay_all(const char *own, FuzzTarget one)
{
        const int sigs[] = { SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL };

        for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
                signal(sigs[i], replay_crashed);
        for (size_t i = 0; i < sizeof(corpora) / sizeof(corpora[0]); i++) {
                size_t files = replay_corpus(corpora[i], one);
                if (strcmp(corpora[i], own) == 0)
                        ck_assert_msg(files > 0, "the %s corpus is empty", own);
        }
}

START_TEST(test_fuzzcorpus_codec_replays_both_corpora)
{
        replay_all("codec", fuzzcorpus_codec_one_input);
}
END_TEST

START_TEST(test_fuzzcorpus_session_replays_both_corpora)
{
        replay_all("session", fuzzcorpus_session_one_input);
}
END_TEST

/* The harness's own checks hold for the empty input and the shortest
 * ones (each is valid for both targets). */
START_TEST(test_fuzzcorpus_targets_take_tiny_inputs)
{
        static const uint8_t in[] = { 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 };

        for (size_t len = 0; len <= sizeof(in); len++) {
                fuzzcorpus_codec_one_input(in, len);
                fuzzcorpus_session_one_input(in, len);
        }
}
END_TEST

Suite *suite_fuzzcorpus(void)
{
        Suite *s = suite_create("fuzzcorpus");
        TCase *tc = test_tcase_default_timeout(s, "replay");

        tcase_add_test(tc, test_fuzzcorpus_targets_take_tiny_inputs);
        tcase_add_test(tc, test_fuzzcorpus_codec_replays_both_corpora);
        tcase_add_test(tc, test_fuzzcorpus_session_replays_both_corpora);
        return s;
}
