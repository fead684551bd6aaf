variable "name" {
  type        = string
  description = "Prefix for every resource name, e.g. litebase-prod."
}

variable "vpc_id" {
  type        = string
  description = "The VPC."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Public subnets for the load balancer."
}

variable "security_group_id" {
  type        = string
  description = "The load balancer's security group."
}

variable "certificate_arn" {
  type        = string
  description = "ACM certificate for the API's domain (HTTPS)."
}

variable "app_port" {
  type        = number
  description = "The port the API container listens on."
  default     = 8000
}

variable "idle_timeout_seconds" {
  type        = number
  description = "Idle connection timeout; long, so quiet WebSockets stay open."
  default     = 3600
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse to delete the load balancer (on in prod)."
  default     = true
}

variable "access_logs_bucket" {
  type        = string
  description = "S3 bucket for access logs (empty: no access logs)."
  default     = ""
}

variable "tags" {
  type        = map(string)
  description = "Tags for every resource."
  default     = {}
}
