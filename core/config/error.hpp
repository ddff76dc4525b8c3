#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace tollgate::conf {

// A configuration error; what() is exactly "FILE:LINE: MESSAGE" (or "MESSAGE" when file is empty,
// or "FILE: MESSAGE" when line is 0, i.e. the error concerns a whole file, such as failing to
// open it).
class ConfigError : public std::runtime_error {
  public:
    // file: configuration file (or source name) the error is in, "" if none; line: 1-based line
    // of the offending token, 0 if not tied to a line; message: the text without location.
    ConfigError(std::string file, int line, std::string message)
        : std::runtime_error(format(file, line, message)),
          file_(std::move(file)),
          line_(line),
          message_(std::move(message)) {}

    // Returns the file name given at construction ("" if none).
    const std::string& file() const { return file_; }
    // Returns the line number given at construction (0 when not tied to a line).
    int line() const { return line_; }
    // Returns the message without the "FILE:LINE: " prefix.
    const std::string& message() const { return message_; }

  private:
    // Builds the what() text from file, line and message as described above the class.
    static std::string format(const std::string& file, int line, const std::string& message) {
        if (file.empty()) return message;
        if (line <= 0) return file + ": " + message;
        return file + ":" + std::to_string(line) + ": " + message;
    }

    std::string file_;
    int line_;
    std::string message_;
};

}  // namespace tollgate::conf
