# A raw_exec batch job that prints its environment and exits.
job "batch-env" {
  datacenters = ["*"]
  type        = "batch"

  group "env" {
    task "env" {
      driver = "raw_exec"

      config {
        command = "/usr/bin/env"
      }

      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
