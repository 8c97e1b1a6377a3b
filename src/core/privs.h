/* privs.h — who the workers run as. The supervisor resolves the user: and
 * group: of smtp.yaml (priv_resolve) when it starts and on every reload;
 * each worker, and kasi --inetd, calls priv_drop right after fork and
 * before any plugin is loaded. The supervisor itself stays root (it binds
 * listeners on reload). */
#ifndef KASI_PRIVS_H
#define KASI_PRIVS_H

#include <stddef.h>
#include <sys/types.h>

struct priv_ids {
    int change;         /* 1: switch to uid/gid; 0: keep who we are */
    uid_t uid;
    gid_t gid;
    char name[64];      /* the user, for its supplementary groups */
};

/* user/group from the config (either may be NULL). Started as root, a
 * user is required ("user: root" to really stay root); not root, a user
 * other than ourselves is an error. 0, or -1 with why in err. */
int priv_resolve(const char *user, const char *group, struct priv_ids *ids,
                 char *err, size_t errlen);
/* initgroups, setgid, setuid, then verify that root cannot come back.
 * 0, or -1 with why in err. */
int priv_drop(const struct priv_ids *ids, char *err, size_t errlen);
/* Make path (a directory or file) belong to the worker user, if we switch
 * users. 0 or -1 (errno). */
int priv_chown(const struct priv_ids *ids, const char *path);

#endif
