# A raw_exec service that says hello and keeps running.
#
#   nomad job run examples/hello.nomad.hcl
#   nomad alloc logs <alloc-id>
job "hello" {
  datacenters = ["*"]
  type        = "service"

  group "hello" {
    count = 1

    task "hello" {
      driver = "raw_exec"

      config {
        command = "/bin/sh"
        # ${NOMAD_ALLOC_ID} and ${NOMAD_TASK_DIR} are filled in by the client when the task starts.
        args = ["-c", "echo \"Hello from nomad-rs: alloc ${NOMAD_ALLOC_ID}, task dir ${NOMAD_TASK_DIR}\"; while true; do sleep 5; done"]
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
