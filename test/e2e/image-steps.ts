// Customize steps the e2e ltspfiles use: they turn the plain Debian fixture into a test client
// that reports on its serial port, so the fixture itself is never copied or changed.
import fs from "node:fs";
import path from "node:path";

/** Files the reader mode reads again and again (about 11 MB, straight from the image). */
export const READ_FILES = ["/usr/bin/python3.11", "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"];

/**
 * Writes /etc/e2e-marker and a unit that prints `E2E-RESULT: OK MARKER root=FSTYPE ltsp=yes|no`
 * once the LTSP client reached multi-user. Then it powers off, or with `reader` it keeps dropping
 * the page cache and reading READ_FILES, printing `E2E-READ N OK CHECKSUM` (or `E2E-READ N FAIL`)
 * every two seconds, which shows whether the image it booted from can still be read.
 */
export function markerStep(marker: string, reader = false) {
  return {
    id: "e2e-marker",
    params: { marker, reader },
    run(_ctx: unknown, root: string): void {
      fs.writeFileSync(path.join(root, "etc/e2e-marker"), `${marker}\n`);
      const script = [
        "#!/bin/sh",
        'echo "E2E-RESULT: OK $(cat /etc/e2e-marker) root=$(findmnt -no FSTYPE /) ltsp=$(test -d /run/ltsp && echo yes || echo no)" >/dev/ttyS0',
        ...(reader
          ? [
              "i=0",
              "while :; do",
              "  i=$((i + 1))",
              "  echo 3 >/proc/sys/vm/drop_caches",
              `  if cat ${READ_FILES.join(" ")} >/dev/shm/e2e-read; then`,
              '    echo "E2E-READ $i OK $(md5sum </dev/shm/e2e-read | cut -c1-32)" >/dev/ttyS0',
              "  else",
              '    echo "E2E-READ $i FAIL" >/dev/ttyS0',
              "  fi",
              "  rm -f /dev/shm/e2e-read",
              "  sleep 2",
              "done",
            ]
          : ["systemctl --no-block poweroff"]),
        "",
      ].join("\n");
      const scriptPath = path.join(root, "usr/local/sbin/e2e-report");
      fs.mkdirSync(path.dirname(scriptPath), { recursive: true });
      fs.writeFileSync(scriptPath, script, { mode: 0o755 });
      const unit = [
        "[Unit]",
        "Description=Report a finished netboot on the serial port",
        "After=multi-user.target ltsp.service",
        "",
        "[Service]",
        `Type=${reader ? "simple" : "oneshot"}`,
        "ExecStart=/usr/local/sbin/e2e-report",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
      ].join("\n");
      fs.writeFileSync(path.join(root, "etc/systemd/system/e2e-marker.service"), unit);
      const wants = path.join(root, "etc/systemd/system/multi-user.target.wants");
      fs.mkdirSync(wants, { recursive: true });
      fs.rmSync(path.join(wants, "e2e-marker.service"), { force: true });
      fs.symlinkSync("/etc/systemd/system/e2e-marker.service", path.join(wants, "e2e-marker.service"));
    },
  };
}
