// bench_setup — a Haraka plugin used only by the kasi benchmark.
//
// - skips the core's reverse DNS lookup of the client (kasi does none);
// - BENCH_DNS=HOST:PORT: every DNS resolver in the process asks that
//   loopback server (node has no global setting for resolver instances
//   that plugins create themselves);
// - BENCH_PUBLIC=1: loopback clients count as public addresses, so that
//   the DNS list and HELO plugins do their work instead of skipping them.

const dns = require('node:dns')

const server = process.env.BENCH_DNS

function pinResolvers(proto) {
    for (const m of ['resolve', 'resolve4', 'resolve6', 'resolveTxt',
        'resolveMx', 'reverse']) {
        const orig = proto[m]
        if (typeof orig !== 'function') continue
        proto[m] = function (...args) {
            if (!this.benchPinned) {
                this.setServers([server])
                this.benchPinned = true
            }
            return orig.apply(this, args)
        }
    }
}

exports.register = function () {
    if (server) {
        dns.setServers([server])
        dns.promises.setServers([server])
        pinResolvers(dns.Resolver.prototype)
        pinResolvers(dns.promises.Resolver.prototype)
    }
}

exports.hook_connect_init = function (next, connection) {
    if (process.env.BENCH_PUBLIC === '1') {
        connection.remote.is_private = false
        connection.remote.is_local = false
    }
    next()
}

exports.hook_lookup_rdns = function (next) {
    next(OK, 'client.bench.test')
}
