# A job whose data lives in the drayage volume "appdata", pinned to one node by name. Run it,
# then run it again with another node to move it there; the volume comes along:
#
#   nomad job run -var node=node-a nomad-job.nomad.hcl
#   nomad job run -var node=node-b nomad-job.nomad.hcl
#
# The client must allow named volumes: plugin "docker" { config { volumes { enabled = true } } }.
# Each start appends a line to /data/starts, so the file lists every node the data has been
# on: nomad alloc exec -job appdata cat /data/starts

variable "node" {
  type        = string
  description = "Name of the Nomad client to run on (its node.unique.name, by default its hostname)."
}

variable "image" {
  type        = string
  default     = "busybox:1.36"
  description = "Image with a POSIX sh, date and sleep."
}

job "appdata" {
  type = "service"

  constraint {
    attribute = "${node.unique.name}"
    value     = var.node
  }

  # Moving to another node is a destructive update: the old allocation stops, and the new
  # one's first Mount may be refused while that happens or wait on the pull; the restart
  # policy below retries it.
  update {
    max_parallel     = 1
    min_healthy_time = "2s"
    healthy_deadline = "5m"
  }

  group "app" {
    count = 1

    restart {
      attempts = 20
      interval = "10m"
      delay    = "3s"
      mode     = "delay"
    }

    task "app" {
      driver = "docker"

      config {
        image         = var.image
        volume_driver = "drayage:dev"
        volumes       = ["appdata:/data"]
        command       = "sh"
        # sh is PID 1: without the trap it would ignore SIGTERM until kill_timeout.
        args = ["-c", <<-EOT
          echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $NOMAD_ALLOC_ID on ${node.unique.name}" >> /data/starts
          trap 'exit 0' TERM INT
          while true; do sleep 1; done
        EOT
        ]
      }

      kill_timeout = "10s"

      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
