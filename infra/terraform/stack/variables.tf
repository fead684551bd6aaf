# What the operator gives (through the environment's variables) ...

variable "name" {
  type        = string
  description = "Prefix for every resource name, e.g. litebase-prod."
}

variable "availability_zones" {
  type        = list(string)
  description = "Two (or more) availability zones in the region."
}

variable "domain_name" {
  type        = string
  description = "The API's domain (its DNS points at the load balancer); PUBLIC_URL is https://<domain_name>."
}

variable "certificate_arn" {
  type        = string
  description = "ACM certificate covering domain_name, in the same region."
}

variable "image_tag" {
  type        = string
  description = "The image tag to run (pushed to this stack's ECR repository)."
}

variable "openai_api_key_secret_arn" {
  type        = string
  description = "Secrets Manager secret with OPENAI_API_KEY (empty: none)."
  default     = ""
}

variable "app_url" {
  type        = string
  description = "Your app's URL, e.g. https://app.example.com: mails link to its pages (APP_URL)."
}

variable "mail_from" {
  type        = string
  description = "The From of every mail, e.g. Acme <no-reply@example.com>; its domain must be a verified SES identity."
}

variable "smtp_credentials_secret_arn" {
  type        = string
  description = "Secrets Manager secret, JSON {\"username\": …, \"password\": …}, with SES SMTP credentials (docs/deploy.md); empty: no mail."
}

variable "smtp_host" {
  type        = string
  description = "The SMTP server (empty: Amazon SES in the stack's region)."
  default     = ""
}

variable "cors_origins" {
  type        = list(string)
  description = "Browser origins allowed to call the API."
  default     = []
}

variable "settings" {
  type        = map(string)
  description = "Further Litebase settings for every task (names as in .env.example)."
  default     = {}
}

# ... and what the environment decides: sizes and toggles. The defaults are the safe side
# (prod's); an environment that relaxes one says so in its main.tf.

variable "key_deletion_window_days" {
  type        = number
  description = "Days a deleted KMS key waits before it is gone (7 to 30)."
  default     = 30
}

variable "single_nat_gateway" {
  type        = bool
  description = "One NAT gateway for all private subnets (cheaper, dev) instead of one per zone (prod)."
  default     = false
}

variable "files_noncurrent_version_days" {
  type        = number
  description = "Days a deleted or replaced file's old version stays in the files bucket."
  default     = 30
}

variable "files_force_destroy" {
  type        = bool
  description = "Let `terraform destroy` delete the files bucket while it holds files (dev only)."
  default     = false
}

variable "keep_images" {
  type        = number
  description = "Tagged images the registry keeps; older ones expire."
  default     = 30
}

variable "database" {
  type = object({
    instance_class           = string
    allocated_storage_gb     = optional(number, 20)
    max_allocated_storage_gb = optional(number, 200)
    multi_az                 = optional(bool, true)
    backup_retention_days    = optional(number, 14)
    deletion_protection      = optional(bool, true)
  })
  description = "RDS PostgreSQL: instance class, storage (initial and autoscaling ceiling, GB), a Multi-AZ standby, days of backups, deletion protection."
  validation {
    condition     = var.database.max_allocated_storage_gb >= var.database.allocated_storage_gb
    error_message = "database.max_allocated_storage_gb must be at least database.allocated_storage_gb."
  }
}

variable "cache" {
  type = object({
    node_type          = string
    replicas           = optional(number, 1)
    automatic_failover = optional(bool, true)
  })
  description = "ElastiCache Redis: node type, read replicas beside the primary, automatic failover across zones."
  validation {
    condition     = !var.cache.automatic_failover || var.cache.replicas >= 1
    error_message = "cache.automatic_failover needs at least one replica."
  }
}

variable "load_balancer_deletion_protection" {
  type        = bool
  description = "Refuse to delete the load balancer (on in prod)."
  default     = true
}

variable "api" {
  type = object({
    cpu                 = number
    memory              = number
    count               = object({ min = number, desired = number, max = number })
    cpu_target          = optional(number, 60)
    requests_per_target = optional(number, 3000)
  })
  description = "API tasks: CPU units (1024 = 1 vCPU) and MiB each, autoscaling bounds and starting count, the average CPU percent and requests per task per minute autoscaling keeps."
  validation {
    condition     = var.api.count.min <= var.api.count.desired && var.api.count.desired <= var.api.count.max
    error_message = "api.count needs min <= desired <= max."
  }
}

variable "worker" {
  type = object({
    cpu                = number
    memory             = number
    concurrency        = number
    count              = object({ min = number, desired = number, max = number })
    queue_depth_target = optional(number, 100)
  })
  description = "Worker tasks: CPU units and MiB each, Celery processes per task, autoscaling bounds and starting count, the Celery queue depth autoscaling keeps."
  validation {
    condition     = var.worker.count.min <= var.worker.count.desired && var.worker.count.desired <= var.worker.count.max
    error_message = "worker.count needs min <= desired <= max."
  }
}
