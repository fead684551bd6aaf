variable "name" {
  type        = string
  description = "Prefix for every resource name, e.g. litebase-prod."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets for the cache."
}

variable "security_group_id" {
  type        = string
  description = "The cache security group (reached only by the services)."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for data at rest and the auth token secret."
}

variable "node_type" {
  type        = string
  description = "ElastiCache node type, e.g. cache.t4g.micro (dev) or cache.m7g.large (prod)."
}

variable "replicas" {
  type        = number
  description = "Read replicas beside the primary; at least 1 for automatic failover."
  default     = 1
}

variable "automatic_failover" {
  type        = bool
  description = "Promote a replica when the primary fails, across zones (on in prod)."
  default     = true
}

variable "engine_version" {
  type        = string
  description = "Redis engine version."
  default     = "7.1"
}

variable "snapshot_retention_days" {
  type        = number
  description = "Days of daily snapshots."
  default     = 7
}

variable "tags" {
  type        = map(string)
  description = "Tags for every resource."
  default     = {}
}
