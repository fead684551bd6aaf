variable "name" {
  type        = string
  description = "Prefix for every resource name, e.g. litebase-prod."
}

variable "image" {
  type        = string
  description = "The Litebase image, <repository url>:<tag> (one image runs every role)."
}

variable "ecr_repository_arn" {
  type        = string
  description = "The repository the image comes from (the execution role may pull from it)."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for log groups, secrets and ECS Exec sessions."
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "Private subnets for the tasks (no public IPs)."
}

variable "api_security_group_id" {
  type        = string
  description = "Security group of the API tasks."
}

variable "worker_security_group_id" {
  type        = string
  description = "Security group of the worker, beat and migrate tasks."
}

variable "target_group_arn" {
  type        = string
  description = "The load balancer target group for the API."
}

variable "request_count_label" {
  type        = string
  description = "ALB/target group label for request-count autoscaling."
}

variable "database_url" {
  type        = string
  description = "postgresql://user@host:5432/db?sslmode=require, without the password."
}

variable "database_password_secret_arn" {
  type        = string
  description = "Secrets Manager secret (RDS-managed JSON) whose password key is the database password."
}

variable "redis_url" {
  type        = string
  description = "rediss://host:6379/0?ssl_cert_reqs=required, without the auth token."
}

variable "redis_password_secret_arn" {
  type        = string
  description = "Secrets Manager secret holding the Redis auth token."
}

variable "openai_api_key_secret_arn" {
  type        = string
  description = "Secrets Manager secret holding OPENAI_API_KEY (empty: none)."
  default     = ""
}

variable "smtp_credentials_secret_arn" {
  type        = string
  description = "Secrets Manager secret, JSON {\"username\": …, \"password\": …}: the SES SMTP credentials the workers send mail with (empty: no SMTP; the tasks then refuse to start unless settings say MAIL_ALLOW_CONSOLE_IN_PROD=true)."
}

variable "smtp_host" {
  type        = string
  description = "The SMTP server (empty: Amazon SES in this region, email-smtp.<region>.amazonaws.com)."
  default     = ""
}

variable "files_bucket_arn" {
  type        = string
  description = "The files bucket: the task role (and no other) may read, write and delete in it."
}

variable "environment" {
  type        = map(string)
  description = "Other settings for every task (see .env.example), e.g. PUBLIC_URL, CORS_ORIGINS."
  default     = {}
}

variable "api_cpu" {
  type        = number
  description = "CPU units per API task (1024 = 1 vCPU)."
  default     = 512
}

variable "api_memory" {
  type        = number
  description = "Memory (MiB) per API task."
  default     = 1024
}

variable "api_count" {
  type        = object({ min = number, desired = number, max = number })
  description = "API tasks: autoscaling bounds and the starting count."
  default     = { min = 2, desired = 2, max = 10 }
}

variable "api_cpu_target" {
  type        = number
  description = "Average CPU percent the API scales to keep."
  default     = 60
}

variable "api_requests_per_target" {
  type        = number
  description = "Requests per API task per minute the API scales to keep."
  default     = 3000
}

variable "worker_cpu" {
  type        = number
  description = "CPU units per worker task."
  default     = 1024
}

variable "worker_memory" {
  type        = number
  description = "Memory (MiB) per worker task."
  default     = 2048
}

variable "worker_concurrency" {
  type        = number
  description = "Celery processes per worker task."
  default     = 2
}

variable "worker_count" {
  type        = object({ min = number, desired = number, max = number })
  description = "Worker tasks: autoscaling bounds and the starting count."
  default     = { min = 1, desired = 2, max = 20 }
}

variable "worker_queue_depth_target" {
  type        = number
  description = "Messages waiting in the Celery queue the workers scale to keep."
  default     = 100
}

variable "log_retention_days" {
  type        = number
  description = "Days to keep container logs."
  default     = 365
}

variable "tags" {
  type        = map(string)
  description = "Tags for every resource."
  default     = {}
}
