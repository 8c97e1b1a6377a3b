/* privs.c — resolving and dropping to the workers' user and group (see
 * privs.h). */
#include "core/privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int priv_fail(char *err, size_t errlen, const char *fmt, const char *arg)
{
    snprintf(err, errlen, fmt, arg, strerror(errno));
    return -1;
}

static int priv_group(const char *group, gid_t *gid, char *err, size_t errlen)
{
    errno = 0;
    struct group *gr = getgrnam(group);
    if (!gr) {
        snprintf(err, errlen, "group: no such group '%s'", group);
        return -1;
    }
    *gid = gr->gr_gid;
    return 0;
}

int priv_resolve(const char *user, const char *group, struct priv_ids *ids,
                 char *err, size_t errlen)
{
    memset(ids, 0, sizeof *ids);
    if (!user) {
        if (geteuid() != 0)
            return group ? (snprintf(err, errlen, "group: needs user: too"), -1) : 0;
        snprintf(err, errlen, "started as root without user: in smtp.yaml; the workers "
                 "would serve mail as root. Set user: (e.g. user: kasi), or write "
                 "user: root to really run as root");
        return -1;
    }
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        snprintf(err, errlen, "user: no such user '%s'", user);
        return -1;
    }
    ids->uid = pw->pw_uid;
    ids->gid = pw->pw_gid;
    snprintf(ids->name, sizeof ids->name, "%s", user);
    if (group && priv_group(group, &ids->gid, err, errlen) < 0)
        return -1;
    if (geteuid() == 0) {
        ids->change = 1;
        return 0;
    }
    if (ids->uid != geteuid() || ids->gid != getegid()) {
        snprintf(err, errlen, "user: %s: switching to another user needs kasi to be "
                 "started as root", user);
        return -1;
    }
    return 0;               /* already that user */
}

int priv_drop(const struct priv_ids *ids, char *err, size_t errlen)
{
    if (!ids->change)
        return 0;
    if (initgroups(ids->name, ids->gid) < 0)
        return priv_fail(err, errlen, "initgroups %s: %s", ids->name);
    if (setgid(ids->gid) < 0)
        return priv_fail(err, errlen, "setgid %s: %s", ids->name);
    if (setuid(ids->uid) < 0)
        return priv_fail(err, errlen, "setuid %s: %s", ids->name);
    if (getuid() != ids->uid || geteuid() != ids->uid || getgid() != ids->gid ||
        getegid() != ids->gid) {
        snprintf(err, errlen, "user %s: the switch did not take", ids->name);
        return -1;
    }
    if (ids->uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        snprintf(err, errlen, "user %s: root could be regained", ids->name);
        return -1;
    }
    return 0;
}

int priv_chown(const struct priv_ids *ids, const char *path)
{
    if (!ids->change)
        return 0;
    return lchown(path, ids->uid, ids->gid);
}
