variable "name" {
  type        = string
  description = "Prefix for every resource name, e.g. litebase-prod."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets for the database."
}

variable "security_group_id" {
  type        = string
  description = "The database security group (reached only by the services)."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for storage, Performance Insights and the master password secret."
}

variable "instance_class" {
  type        = string
  description = "RDS instance class, e.g. db.t4g.micro (dev) or db.m7g.large (prod)."
}

variable "allocated_storage_gb" {
  type        = number
  description = "Initial storage in GB (gp3)."
  default     = 20
}

variable "max_allocated_storage_gb" {
  type        = number
  description = "Storage autoscaling ceiling in GB."
  default     = 200
}

variable "engine_version" {
  type        = string
  description = "PostgreSQL version (16.x ships pgvector; the first migration enables it)."
  default     = "16.4"
}

variable "database_name" {
  type        = string
  description = "The database Litebase uses."
  default     = "litebase"
}

variable "username" {
  type        = string
  description = "The master user (its password lives in Secrets Manager, managed by RDS)."
  default     = "litebase"
}

variable "multi_az" {
  type        = bool
  description = "A standby in a second zone with automatic failover (on in prod)."
  default     = true
}

variable "backup_retention_days" {
  type        = number
  description = "Days of automated backups and point-in-time recovery."
  default     = 14
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse to delete the database (on in prod)."
  default     = true
}

variable "monitoring_interval" {
  type        = number
  description = "Seconds between Enhanced Monitoring samples (0 turns it off)."
  default     = 60
}

variable "tags" {
  type        = map(string)
  description = "Tags for every resource."
  default     = {}
}
