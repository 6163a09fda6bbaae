# An example job for Nomad. Run it with "nomad job run example.nomad.hcl".
# Every block below is optional unless noted; the comments explain what each
# setting does and where the defaults come from.

# The job block names the job. A job ID must be unique in its namespace.
job "example" {
  # Datacenters the job may run in. "*" matches every datacenter.
  datacenters = ["*"]

  # service jobs run forever and are restarted when they stop. Other types are
  # batch, system and sysbatch.
  type = "service"

  # How new versions of the job are rolled out.
  update {
    # Number of allocations replaced at the same time.
    max_parallel = 1

    # How long an allocation must be healthy before it counts as healthy.
    min_healthy_time = "10s"

    # How long an allocation may take to become healthy.
    healthy_deadline = "3m"

    # How long the whole rollout may go without progress before it fails.
    progress_deadline = "10m"

    # Whether a failed rollout goes back to the last good version.
    auto_revert = false

    # Number of canary allocations placed before the old ones are replaced.
    canary = 0
  }

  # How allocations move off a node that is being drained.
  migrate {
    # Number of allocations moved at the same time.
    max_parallel = 1

    # Health is judged by service checks ("checks") or task states ("task_states").
    health_check = "checks"

    # How long a moved allocation must be healthy.
    min_healthy_time = "10s"

    # How long a moved allocation may take to become healthy.
    healthy_deadline = "5m"
  }

  # Extra information shown for this job in the web UI.
  ui {
    description = "An example **Redis** job for Nomad"

    link {
      label = "Learn more about Nomad"
      url   = "https://developer.hashicorp.com/nomad"
    }
  }

  # A group holds tasks that are always placed together on one node.
  group "cache" {
    # Number of allocations of this group to run.
    count = 1

    # Ports the group needs. "db" gets a dynamic host port mapped to 6379
    # inside the task.
    network {
      port "db" {
        to = 6379
      }
    }

    # Registers the group in Nomad's built-in service catalog.
    service {
      name     = "redis-cache"
      tags     = ["global", "cache"]
      port     = "db"
      provider = "nomad"
    }

    # What the client does when a task fails: retry twice within 30 minutes,
    # waiting 15 seconds between tries, then give up.
    restart {
      attempts = 2
      interval = "30m"
      delay    = "15s"
      mode     = "fail"
    }

    # Scratch disk shared by the group's tasks, in MB.
    ephemeral_disk {
      size = 300
    }

    # A task is one process run by a driver.
    task "redis" {
      # The driver that runs the task.
      driver = "docker"

      # Driver-specific settings.
      config {
        image          = "redis:7"
        ports          = ["db"]
        auth_soft_fail = true
      }

      # Time between deregistering the service and stopping the task.
      shutdown_delay = "10s"

      # Hands the task a workload identity token in its environment and in a file.
      identity {
        env  = true
        file = true
      }

      # Resources the task needs: CPU in MHz and memory in MB.
      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
