/// Where kvmd's `pst.server.unix` puts the daemon's socket unless configured
/// otherwise: the daemon, `kvmd-pstrun` and the library all default to it.
package let defaultDaemonSocketPath = "/run/kvmd/pst.sock"
