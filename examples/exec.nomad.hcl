# An exec batch job that shows its isolation: the task runs as `nobody` in a chroot built from
# read-only bind mounts of the client's chroot_env, in its own PID and IPC namespaces, with
# Nomad's default capability set minus everything (cap_drop = ["all"]).
#
#   sudo nomad agent -dev &
#   nomad job run examples/exec.nomad.hcl
#   nomad alloc logs <alloc>
#
# prints: `uid=65534(nobody) ...`, `NSpid: <host pid> 1` (PID 1 in its own namespace),
# `CapEff: 0000000000000000`, and a root holding only the chroot_env entries plus
# alloc/ local/ secrets/ tmp/ (and dev/ proc/).
job "exec-isolation" {
  datacenters = ["*"]
  type        = "batch"

  group "show" {
    task "show" {
      driver = "exec"

      config {
        command  = "/bin/sh"
        args     = ["-c", "id; cat /proc/self/status | grep -E 'NSpid|CapEff'; ls /; echo task_dir=$NOMAD_TASK_DIR"]
        cap_drop = ["all"]
      }

      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
