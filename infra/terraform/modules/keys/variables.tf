variable "name" {
  type        = string
  description = "Prefix for every resource name, e.g. litebase-prod."
}

variable "deletion_window_days" {
  type        = number
  description = "Days a deleted key waits before it is gone (7 to 30)."
  default     = 30
}

variable "tags" {
  type        = map(string)
  description = "Tags for every resource."
  default     = {}
}
