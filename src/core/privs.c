/* privs.c — resolving and dropping to the workers' user and group (see
 * privs.h). */
#include "core/privs.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

int priv_spool(const struct priv_ids *ids, const char *dir, int *given)
{
    struct stat st;
    *given = 0;
    if (!ids->change)
        return 0;
    if (stat(dir, &st) < 0)
        return -1;
    if (st.st_uid == ids->uid || (st.st_gid == ids->gid && (st.st_mode & 0070) == 0070))
        return 0;
    if (chown(dir, ids->uid, ids->gid) < 0 || chmod(dir, 0700) < 0)
        return -1;
    *given = 1;
    return 0;
}

int priv_can_signal(const struct priv_ids *ids)
{
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
    if (!ids->change || ids->uid == geteuid())
        return 1;
    if (syscall(SYS_capget, &h, d) < 0)
        return 1;               /* cannot tell: kill() will */
    return (d[CAP_KILL / 32].effective >> (CAP_KILL % 32)) & 1;
}

int priv_share_begin(const struct priv_ids *ids)
{
    if (!ids->change)
        return 0;
    setfsgid(ids->gid);
    if ((gid_t)setfsgid((gid_t)-1) != ids->gid) {   /* -1: only reads it */
        errno = EPERM;
        return -1;
    }
    return 0;
}

void priv_share_end(void)
{
    setfsgid(getegid());
}
