/* Wait until stdin is readable, at most 5 s, through netpolld. */
#include <netpoll.h>
#include <stdio.h>

int main(void)
{
        np_client *c;
        np_desc d;
        int r = np_connect(NULL, &c); /* $NETPOLL_SOCKET or the system socket */

        if (r < 0 || (r = np_open(c, 0, 42, &d)) < 0) {
                fprintf(stderr, "netpoll: %s\n", np_strerror(r));
                return 1;
        }
        np_set_deadline(c, d, 5000000000, NP_READ);   /* 5 s, relative */
        r = np_wait(c, d, NP_READ);                   /* NP_OK or NP_ERR_TIMEOUT */
        printf("stdin: %s\n", np_strerror(r));
        np_unblock(c, d);                             /* as Go: unblock, then close */
        np_close(c, d);
        np_disconnect(c);
        return r == NP_OK ? 0 : 2;
}
