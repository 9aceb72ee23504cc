import Foundation
import PersistentStorageTestSupport
import Testing

extension KvmdInteropTests {
    /// kvmd's `scripts/kvmd-certbot` (4.197) holds PST sessions in three ways,
    /// reproduced here against our daemon with each `kvmd-pstrun` (kvmd's
    /// script itself needs a whole PiKVM: its user, certbot, nginx):
    ///
    /// 1. as root, a `bash -c` that creates its run root on the storage and
    ///    gives it to its user (a path below the mount point that it names
    ///    itself; it ignores `KVMD_PST_DATA`);
    /// 2. `sudo --preserve-env -u USER kvmd-pstrun -- certbot ...`: a client
    ///    that is not root, with the caller's environment, and certbot's
    ///    options after the command;
    /// 3. after a renewal made off the storage, as root, a `bash -c` that
    ///    copies it in, `sync`s, bind-mounts it in a mount namespace of its
    ///    own to test it, and swaps it with the old one
    ///    (`kvmd-helper-swapfiles`, kvmd's own, run from kvmd's tree).
    ///
    /// Its user here is `nobody`, in the socket's group (`nogroup`) as
    /// `kvmd-certbot` is in `kvmd-pst` on a PiKVM; a shell script stands in
    /// for certbot and writes what certbot writes.
    @Suite("kvmd-certbot's sessions against our daemon")
    struct Certbot {
        static let user = "nobody"
        static let domain = "example.org"

        @Test("Its run root is made, a certificate issued as its user, and a renewal swapped in; the storage is read-only after each",
              arguments: [KvmdAnchor.Client.kvmd, .ours])
        func certbotSessions(client: KvmdAnchor.Client) async throws {
            let anchor = try KvmdAnchor.load()
            let markers = try Markers()
            let certbot = markers.path("certbot")
            let swapfiles = markers.path("kvmd-helper-swapfiles")
            try Self.certbotStandIn.write(toFile: certbot, atomically: true, encoding: .utf8)
            try """
                #!/bin/sh
                exec '\(anchor.venv)/bin/python' -c 'import sys; sys.path.insert(0, sys.argv.pop(1)); from kvmd.helpers.swapfiles import main; main()' '\(anchor.kvmdSource)' "$@"

                """.write(toFile: swapfiles, atomically: true, encoding: .utf8)
            chmod(certbot, 0o755)
            chmod(swapfiles, 0o755)

            let base = anchor.mount + "/data/certbot-" + client.rawValue
            let current = base + "/runroot"
            let next = base + "/runroot.new"
            let staging = markers.path("runroot")
            let options = ["--config-dir=\(current)/config", "--work-dir=\(current)/work", "--logs-dir=\(current)/logs"]

            try await anchor.withDaemon(.ours, ourOptions: ["--socket-group", "nogroup"]) { _ in
                // 1. The run root, made as root.
                let made = try await anchor.pstrun(client, command: [
                    "bash", "-c", #"set -ex; mkdir -p "$0"; chown -R "$1:" "$0/..""#, current, Self.user,
                ])
                #expect(made.status == 0, "\(made.standardError)")
                #expect(try await anchor.run(["stat", "-c", "%U", current]).standardOutput == "\(Self.user)\n")
                #expect(await anchor.becomesReadOnly())

                // 2. certbot certonly as its user, through sudo, with a deploy hook.
                let hook = #"--deploy-hook=/usr/bin/bash -c 'set -ex; chmod 755 "# + current + #"/config/archive "# + current
                    + #"/config/live; chmod 640 "$RENEWED_LINEAGE/privkey.pem"'"#
                let issued = try await anchor.run(
                    ["env", "CERTBOT_TEST_MARK=kept", "sudo", "--preserve-env", "-u", Self.user]
                        + anchor.pstrunArguments(client, command: [certbot, "certonly", "-d", Self.domain] + options + [hook]))
                #expect(issued.status == 0, "\(issued.standardError)")
                #expect(issued.standardOutput.contains("user=\(Self.user) data=\(anchor.mount) mark=kept"), "\(issued.standardOutput)")
                let live = current + "/config/live/" + Self.domain
                #expect(try await anchor.contents(of: live + "/fullchain.pem") == "fullchain 1\n")
                #expect(try await anchor.run(["stat", "-L", "-c", "%a %U", live + "/privkey.pem"]).standardOutput == "640 \(Self.user)\n")
                #expect(await anchor.becomesReadOnly())

                // 3. A renewal made off the storage, then swapped in as root.
                let renewed = try await anchor.run(["bash", "-c", #"""
                    set -ex
                    cur=$0 tmp=$1 user=$2 certbot=$3
                    cp -a "$cur/." "$tmp"
                    chown -R "$user:" "$tmp"
                    sed -i -e "s| = $cur/| = $tmp/|g" "$tmp/config/renewal/"*
                    sudo -u "$user" "$certbot" renew --config-dir="$tmp/config" --work-dir="$tmp/work" --logs-dir="$tmp/logs" \
                        --deploy-hook="/usr/bin/touch '$tmp/updated'"
                    test -f "$tmp/updated"
                    """#, current, staging, Self.user, certbot])
                #expect(renewed.status == 0, "\(renewed.standardError)")
                let swapped = try await anchor.pstrun(client, command: ["bash", "-c", #"""
                    set -ex
                    cur=$0 new=$1 tmp=$2 swapfiles=$3 domain=$4
                    rm -rf "$new"
                    cp -aT "$tmp" "$new"
                    rm "$new/updated"
                    sed -i -e "s| = $tmp/| = $cur/|g" "$new/config/renewal/"*
                    sync
                    unshare --mount bash -c 'set -ex; mount --bind "$0" "$1"; test -s "$1/config/live/$2/fullchain.pem"' "$new" "$cur" "$domain"
                    "$swapfiles" "$new" "$cur"
                    rm -rf "$new"
                    """#, current, next, staging, swapfiles, Self.domain])
                #expect(swapped.status == 0, "\(swapped.standardError)")
                #expect(try await anchor.contents(of: live + "/fullchain.pem") == "fullchain 2\n")
                let renewal = try await anchor.contents(of: current + "/config/renewal/\(Self.domain).conf") ?? ""
                #expect(renewal.contains(" = \(current)/") && !renewal.contains(staging), "\(renewal)")
                #expect(try await anchor.run(["test", "-e", next]).status == 1)
                #expect(await anchor.becomesReadOnly())
            }
        }

        /// What certbot leaves in `--config-dir` for `certonly` and `renew`,
        /// and its deploy hook run with `RENEWED_LINEAGE`, as certbot runs it.
        static let certbotStandIn = #"""
            #!/bin/sh
            # A stand-in for certbot (swift-pst tests): writes what certbot writes.
            set -e
            action=$1
            shift
            for argument in "$@"; do
                case $argument in
                    --config-dir=*) config=${argument#*=} ;;
                    --work-dir=*) work=${argument#*=} ;;
                    --logs-dir=*) logs=${argument#*=} ;;
                    --deploy-hook=*) hook=${argument#*=} ;;
                esac
            done
            echo "user=$(id -un) data=${KVMD_PST_DATA:-} mark=${CERTBOT_TEST_MARK:-}"
            domain=example.org
            case $action in
                certonly) n=1 ;;
                renew) n=2 ;;
                *) echo "unknown action $action" >&2; exit 2 ;;
            esac
            mkdir -p "$work" "$logs" "$config/archive/$domain" "$config/live/$domain" "$config/renewal"
            echo "log $n" > "$logs/letsencrypt.log"
            for file in cert chain fullchain privkey; do
                echo "$file $n" > "$config/archive/$domain/$file$n.pem"
                ln -sfn "../../archive/$domain/$file$n.pem" "$config/live/$domain/$file.pem"
            done
            chmod 600 "$config/archive/$domain/privkey$n.pem"
            printf 'archive_dir = %s/archive/%s\ncert = %s/live/%s/cert.pem\n' "$config" "$domain" "$config" "$domain" \
                > "$config/renewal/$domain.conf"
            RENEWED_LINEAGE=$config/live/$domain sh -c "$hook"

            """#
    }
}
