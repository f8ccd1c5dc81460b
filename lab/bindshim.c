/* LD_PRELOAD shim of the lab's bastion (lab/CONTRACT.md, "Bastion").
 *
 * Every lab node shares the host's network namespace, so every TCP connection to a node arrives
 * from 127.0.0.1, whoever makes it. The bastion's sshd runs with this library preloaded and
 * LAB_BIND_ADDRESS=<its own address>: before an IPv4 connect() it binds the socket to that
 * address (port 0: the kernel picks the port), so the connections it forwards (direct-tcpip,
 * ProxyJump) come from the bastion's address, and the nodes' sshd can allow only that one
 * (AllowUsers *@<bastion address>).
 *
 * LAB_BIND_ADDRESS is read at each call; unset or empty: connect() is passed through untouched,
 * as are connect()s of any other address family (AF_UNIX, AF_INET6, AF_UNSPEC). An already
 * bound socket (bind fails with EINVAL) keeps its address. Any other bind failure fails the
 * connect() with bind's errno: a connection from the wrong address is never made silently.
 *
 * Built on the host by lab/bastion.py: cc -shared -fPIC -O2 -o bindshim.so bindshim.c -ldl
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    static connect_fn real_connect;
    if (real_connect == NULL) {
        real_connect = (connect_fn)dlsym(RTLD_NEXT, "connect");
        if (real_connect == NULL) {
            errno = ENOSYS;
            return -1;
        }
    }
    /* An AF_INET destination means an AF_INET socket (any other socket refuses it). Checked
     * without a system call: sshd's sandboxed processes may not make any. */
    const char *want = getenv("LAB_BIND_ADDRESS");
    if (want != NULL && *want != '\0' && addr != NULL && len >= sizeof(struct sockaddr_in)
        && addr->sa_family == AF_INET) {
        struct sockaddr_in src;
        memset(&src, 0, sizeof src);
        src.sin_family = AF_INET;
        src.sin_port = 0;
        if (inet_pton(AF_INET, want, &src.sin_addr) != 1) {
            errno = EINVAL;
            return -1;
        }
        int saved = errno;
        if (bind(fd, (const struct sockaddr *)&src, sizeof src) != 0) {
            if (errno != EINVAL)
                return -1;
            errno = saved; /* already bound: keep that address */
        }
    }
    return real_connect(fd, addr, len);
}
