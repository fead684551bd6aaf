variable "name" {
  type        = string
  description = "Prefix for every resource name, e.g. litebase-prod."
}

variable "cidr_block" {
  type        = string
  description = "The VPC's address range."
  default     = "10.20.0.0/16"
}

variable "availability_zones" {
  type        = list(string)
  description = "Two (or more) availability zones for the subnets."
  validation {
    condition     = length(var.availability_zones) >= 2
    error_message = "Give at least two availability zones."
  }
}

variable "single_nat_gateway" {
  type        = bool
  description = "One NAT gateway for all private subnets (cheaper, dev) instead of one per zone (prod)."
  default     = false
}

variable "app_port" {
  type        = number
  description = "The port the API container listens on."
  default     = 8000
}

variable "flow_log_retention_days" {
  type        = number
  description = "Days to keep VPC flow logs."
  default     = 365
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key that encrypts the flow log group."
}

variable "tags" {
  type        = map(string)
  description = "Tags for every resource."
  default     = {}
}
